"""How good and how faithful a denoised image is: PSNR/SSIM/FSC/EPI, atom columns, power
spectra, the faithfulness readout and the lattice guard (numpy and scipy only)."""

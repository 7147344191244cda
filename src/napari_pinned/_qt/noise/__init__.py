"""The Noise dock: CDN, dose or realistic scan noise added to a layer."""

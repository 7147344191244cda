"""Files frame by frame, zarr in and out, resuming, and dask.distributed clusters.

The cluster tests start a real ``LocalCluster`` of two worker *processes* (one thread
each) and denoise with a tiny model.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from napari_pinned.cli.entry import main
from napari_pinned.denoising import denoiser as inference
from napari_pinned.denoising import files as scale
from napari_pinned.denoising.denoiser import denoise
from napari_pinned.denoising.model_spec import ModelSpec
from napari_pinned.io.images import read_image, read_pixel_size
from napari_pinned.io.tiff import write_tiff
from napari_pinned.nn.model_files import save_model
from napari_pinned.nn.network import ModelBundle, build_model
from napari_pinned.settings import ModelConfig

zarr = pytest.importorskip("zarr")
pytest.importorskip("dask.array")


@pytest.fixture(scope="module")
def model_file(tmp_path_factory, tiny_conditioned) -> Path:
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    return save_model(tiny_conditioned(3, name="tiny"), path)


def _stack(frames=5, shape=(90, 104), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]]
    lattice = 2.0 + np.cos(2 * np.pi * x / 8.0) * np.cos(2 * np.pi * y / 8.0)
    return rng.poisson(lattice * 8.0, (frames, *shape)).astype(np.uint16)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_frame_options_default_to_what_denoise_does():
    # FrameOptions carries denoise()'s per-frame keywords through the file jobs; its
    # defaults must stay those of the function users call.
    import dataclasses
    import inspect

    parameters = inspect.signature(inference.denoise).parameters
    for field in dataclasses.fields(scale.FrameOptions):
        assert getattr(scale.FrameOptions(), field.name) == parameters[field.name].default


def test_tiff_to_zarr_to_tiff_keeps_pixel_size_and_values(tmp_path, model_file):
    stack = _stack()
    write_tiff(tmp_path / "in.tif", stack, pixel_size=0.25)
    expected = denoise(stack, model_file, device="cpu")
    cpu = ["--model", str(model_file), "--device", "cpu"]
    assert main(["denoise", str(tmp_path / "in.tif"), "-o", str(tmp_path / "out.zarr"), *cpu]) == 0
    store = zarr.open(str(tmp_path / "out.zarr"), mode="r")
    assert store.shape == stack.shape and store.dtype == np.float32
    assert store.chunks == (1, 90, 104)  # one frame per chunk
    assert store.attrs["pixel_size_angstrom"] == pytest.approx(0.25)
    assert store.attrs["napari_pinned"]["model"] == "tiny"
    np.testing.assert_allclose(store[...], expected, atol=1e-4)
    back = tmp_path / "back.tif"
    assert main(["denoise", str(tmp_path / "out.zarr"), "-o", str(back), *cpu]) == 0
    assert read_image(back).shape == stack.shape
    assert read_pixel_size(back) == pytest.approx(0.25)
    assert _leftovers(tmp_path) == []


def _interrupt_after(source: Path, target: Path, model: Path, frames: int) -> None:
    """Run a file job and stop it once ``frames`` frames are written (as Ctrl-C would)."""
    job = scale.iter_denoise_file(source, target, model, scale.FrameOptions(device="cpu"))
    for record in job:
        if record.done >= frames:
            break
    job.close()


def test_an_interrupted_zarr_output_is_resumed_not_redone(tmp_path, model_file, capsys):
    stack = _stack(frames=5)
    source = write_tiff(tmp_path / "in.tif", stack)
    target = tmp_path / "out.zarr"
    _interrupt_after(source, target, model_file, 2)
    partial = tmp_path / ".out.zarr.partial"
    assert not target.exists() and partial.is_dir()  # never half-written under its name
    progress = json.loads((partial / "pinned-progress.json").read_text())
    assert progress["done"] == [0, 1]
    # Mark frame 0 so that we can tell it is kept, not computed again.
    kept = zarr.open(str(partial), mode="r+")
    kept[0] = np.full(stack.shape[1:], 7.0, np.float32)

    argv = [
        "denoise",
        str(source),
        "-o",
        str(target),
        "--model",
        str(model_file),
        "--device",
        "cpu",
    ]
    assert main(argv) == 2
    assert "add --resume" in capsys.readouterr().err
    assert main([*argv, "--resume"]) == 0
    assert "2 frames from the interrupted run" in capsys.readouterr().out
    result = read_image(target)
    expected = denoise(stack, model_file, device="cpu")
    assert np.all(result[0] == 7.0)
    np.testing.assert_allclose(result[1:], expected[1:], atol=1e-4)
    assert not (target / "pinned-progress.json").exists() and _leftovers(tmp_path) == []


def test_a_resume_with_another_model_is_refused(tmp_path, model_file):
    source = write_tiff(tmp_path / "in.tif", _stack(frames=3))
    target = tmp_path / "out.zarr"
    _interrupt_after(source, target, model_file, 1)
    other = tmp_path / "other.pt"
    config = ModelConfig.preset("tiny", normalization="robust", conditioning="noise-map")
    save_model(ModelBundle(build_model(config), config), other)
    argv = ["denoise", str(source), "-o", str(target), "--model", str(other), "--resume"]
    assert main(argv) == 2
    assert (tmp_path / ".out.zarr.partial").is_dir()  # left for the right command


def test_a_resume_with_other_orientations_is_refused(tmp_path, model_file, capsys):
    # Tile and overlap may change on resume (tiling is exact); orientations change the
    # values, so frames of two settings must not mix in one output.
    source = write_tiff(tmp_path / "in.tif", _stack(frames=3))
    target = tmp_path / "out.zarr"
    _interrupt_after(source, target, model_file, 1)
    argv = ["denoise", str(source), "-o", str(target), "--model", str(model_file), "--resume"]
    assert main([*argv, "--orientations", "2", "--device", "cpu"]) == 2
    assert "another input, model or settings" in capsys.readouterr().err
    assert main([*argv, "--tile", "64", "--device", "cpu"]) == 0


def test_ome_zarr_level_0_in_and_out_with_its_scale(tmp_path, model_file):
    stack = _stack(frames=2)
    group = zarr.open_group(str(tmp_path / "image.ome.zarr"), mode="w")
    level = group.create_array(
        "0", shape=(1, 1, *stack.shape), chunks=(1, 1, 1, 45, 52), dtype="u2"
    )
    level[...] = stack[None, None]
    axes = [
        {"name": "t", "type": "time"},
        {"name": "c", "type": "channel"},
        {"name": "z", "type": "space"},
        {"name": "y", "type": "space", "unit": "nanometer"},
        {"name": "x", "type": "space", "unit": "nanometer"},
    ]
    scale_ = [1.0, 1.0, 1.0, 0.02, 0.02]
    group.attrs["ome"] = {
        "version": "0.5",
        "multiscales": [
            {
                "axes": axes,
                "datasets": [
                    {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": scale_}]}
                ],
            }
        ],
    }
    target = tmp_path / "out.zarr"
    argv = ["denoise", str(tmp_path / "image.ome.zarr"), "-o", str(target), "--device", "cpu"]
    assert main([*argv, "--model", str(model_file)]) == 0
    assert read_pixel_size(target) == pytest.approx(0.2)  # 0.02 nm in Å
    out = zarr.open_group(str(target), mode="r")
    meta = out.attrs["ome"]["multiscales"][0]
    assert [a["name"] for a in meta["axes"]] == ["z", "y", "x"]
    assert meta["datasets"][0]["coordinateTransformations"][0]["scale"] == [1.0, 0.02, 0.02]
    np.testing.assert_allclose(out["0"][...], denoise(stack, model_file, device="cpu"), atol=1e-4)


def test_an_unreachable_scheduler_is_one_line_and_exit_2(tmp_path, model_file, capsys, monkeypatch):
    pytest.importorskip("distributed")
    monkeypatch.setattr(scale, "CONNECT_TIMEOUT_S", 1.0)
    source = write_tiff(tmp_path / "in.tif", _stack(frames=2))
    argv = ["denoise", str(source), "-o", str(tmp_path / "o.zarr"), "--model", str(model_file)]
    # Port 9 (discard) on this machine: nothing listens there.
    assert main([*argv, "--scheduler", "tcp://127.0.0.1:9"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "cannot reach the scheduler" in lines[0], lines
    assert not (tmp_path / "o.zarr").exists() and _leftovers(tmp_path) == []


# -- a real cluster: two worker processes ----------------------------------------------------


@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("distributed")
    import logging

    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.ERROR,
        ) as local,
        distributed.Client(local) as client,
    ):
        yield local, client


def _count_builds() -> None:
    """In a worker: count the networks built from specs (wraps ``ModelSpec.bundle``)."""
    if hasattr(ModelSpec.bundle, "builds"):
        return
    build = ModelSpec.bundle

    def counted(self: ModelSpec):
        counted.builds += 1
        return build(self)

    counted.builds = 0
    ModelSpec.bundle = counted


def _builds() -> int:
    return ModelSpec.bundle.builds


@pytest.mark.slow
def test_dask_arrays_under_a_client_are_denoised_by_worker_processes(cluster, model_file):
    import dask.array as da

    _local, client = cluster
    stack = _stack(frames=6, shape=(140, 120))
    lazy = da.from_array(stack, chunks=(1, 70, 120))
    client.run(_count_builds)
    before = client.run(_builds)
    result = denoise(lazy, ModelSpec.of(model_file), device="cpu")
    computed = client.compute(result).result()
    expected = denoise(stack, model_file, device="cpu")
    assert np.abs(computed - expected).max() <= 1e-3 * np.ptp(expected)
    # Twelve chunks, two processes: the model was built at most once in each.
    after = client.run(_builds)
    built = {worker: after[worker] - before.get(worker, 0) for worker in after}
    assert len(built) == 2 and all(n <= 1 for n in built.values()) and sum(built.values()) >= 1


def test_the_cli_on_a_scheduler_gives_the_local_result(cluster, tmp_path, model_file):
    local, _client = cluster
    stack = _stack(frames=4)
    source = zarr.create_array(
        str(tmp_path / "in.zarr"), shape=stack.shape, chunks=(2, 45, 104), dtype="u2"
    )
    source[...] = stack
    common = ["--model", str(model_file), "--device", "cpu"]
    assert (
        main(["denoise", str(tmp_path / "in.zarr"), "-o", str(tmp_path / "a.zarr"), *common]) == 0
    )
    argv = ["denoise", str(tmp_path / "in.zarr"), "-o", str(tmp_path / "b.zarr"), *common]
    assert main([*argv, "--scheduler", local.scheduler_address]) == 0
    a, b = read_image(tmp_path / "a.zarr"), read_image(tmp_path / "b.zarr")
    assert np.abs(a - b).max() <= 1e-3 * np.ptp(a)
    assert _leftovers(tmp_path) == []


@pytest.mark.slow
def test_a_batch_on_two_local_workers(tmp_path, model_file, capsys):
    pytest.importorskip("distributed")
    sources = [write_tiff(tmp_path / f"s{i}.tif", _stack(frames=2, seed=i)) for i in range(3)]
    out = tmp_path / "out"
    out.mkdir()
    argv = ["denoise", *map(str, sources), "--output-dir", str(out), "--model", str(model_file)]
    assert main([*argv, "--workers", "2", "--output-format", "zarr"]) == 0
    assert "2 workers" in capsys.readouterr().err
    for i, source in enumerate(sources):
        result = read_image(out / f"s{i}_denoised.zarr")
        np.testing.assert_allclose(result, denoise(read_image(source), model_file), atol=1e-4)


# -- TIFF frame by frame ----------------------------------------------------------------------


def test_tiff_frames_read_one_frame_at_a_time_like_the_array(tmp_path):
    import tifffile

    from napari_pinned.io.tiff import TiffFrames

    stack = _stack(frames=4, shape=(20, 24))
    write_tiff(tmp_path / "contiguous.tif", stack)
    tifffile.imwrite(tmp_path / "pages.tif", stack, compression="zlib")
    for name in ("contiguous.tif", "pages.tif"):
        frames = TiffFrames(tmp_path / name)
        assert frames.shape == stack.shape
        for key in (2, -1, (1, slice(2, 9)), slice(1, 3), (slice(0, 4, 2), slice(None), 5)):
            np.testing.assert_array_equal(frames[key], stack.astype(np.float32)[key], err_msg=name)


@pytest.mark.parametrize("byteorder", ["<", ">"])
@pytest.mark.parametrize("frames", [0, 3], ids=["image", "stack"])
def test_denoise_of_open_frames_reads_each_frame_once_and_matches_the_array(
    tmp_path, monkeypatch, model_file, byteorder, frames
):
    # A 2-D TiffFrames went through np.asarray as a sequence of rows, each reading the
    # whole frame: memory quadratic in the height.  Big-endian files (ImageJ's) were
    # read byte-swapped.
    import tifffile

    from napari_pinned.io.images import open_frames
    from napari_pinned.io.tiff import TiffFrames

    data = _stack(frames=max(frames, 1), shape=(70, 52))
    data = data[0] if frames == 0 else data
    path = tmp_path / "in.tif"
    tifffile.imwrite(path, data, byteorder=byteorder, imagej=True)
    reads: list[int] = []
    original = TiffFrames._frame

    def counted(self, index):
        reads.append(index)
        return original(self, index)

    monkeypatch.setattr(TiffFrames, "_frame", counted)
    lazy = denoise(open_frames(path), model_file)
    assert reads == list(range(max(frames, 1)))
    np.testing.assert_array_equal(lazy, denoise(read_image(path), model_file))
    np.testing.assert_array_equal(lazy, denoise(data, model_file))


def test_denoise_reads_a_lazy_image_without_array_once(model_file):
    # The API's promise is "any array with shape, dtype and indexing": one read of the
    # frame, not one per row as numpy's sequence protocol would make.
    image = _stack(frames=1, shape=(64, 48))[0]

    class Lazy:
        shape, dtype, ndim = image.shape, image.dtype, 2

        def __init__(self):
            self.reads = 0

        def __len__(self):
            return self.shape[0]

        def __getitem__(self, key):
            self.reads += 1
            return image[key]

    lazy = Lazy()
    np.testing.assert_array_equal(denoise(lazy, model_file), denoise(image, model_file))
    assert lazy.reads == 1


def test_a_tiff_stack_written_frame_by_frame_appears_only_when_complete(tmp_path):
    from napari_pinned.io.tiff import TiffStackWriter

    stack = _stack(frames=3, shape=(20, 24)).astype(np.float32)
    target = tmp_path / "out.tif"
    with pytest.raises(KeyboardInterrupt), TiffStackWriter(target, stack.shape) as writer:
        writer[0] = stack[0]
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
    with (
        pytest.raises(ValueError, match="1 of 3 frames written"),
        TiffStackWriter(target, stack.shape) as writer,
    ):
        writer[0] = stack[0]
    assert list(tmp_path.iterdir()) == []
    with TiffStackWriter(target, stack.shape, pixel_size=0.5) as writer:
        for i, frame in enumerate(stack):
            writer[i] = frame
    np.testing.assert_array_equal(read_image(target), stack)
    assert read_pixel_size(target) == 0.5


# -- zarr runs: one at a time, resumes that check what they keep, full disks (issue 21) -----


def _cli(source: Path, target: Path, model: Path, *extra: str) -> list[str]:
    cpu = ["--model", str(model), "--device", "cpu"]
    return ["denoise", str(source), "-o", str(target), *cpu, *extra]


def _errors(capsys) -> list[str]:
    return [ln for ln in capsys.readouterr().err.splitlines() if "error:" in ln]


@pytest.mark.slow
def test_a_second_run_on_a_zarr_output_in_progress_is_one_line_and_exit_2(
    tmp_path, model_file, capsys
):
    stack = _stack(frames=4)
    source = write_tiff(tmp_path / "in.tif", stack)
    target = tmp_path / "out.zarr"
    first = scale.iter_denoise_file(source, target, model_file, scale.FrameOptions(device="cpu"))
    for record in first:
        if record.done >= 1:
            break  # the first run is under way, and goes on below
    for extra in ([], ["--resume"]):
        capsys.readouterr()
        assert main(_cli(source, target, model_file, *extra)) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "another run (process" in err[0], err
    for _record in first:
        pass
    assert (target / "zarr.json").exists()
    expected = denoise(stack, model_file, device="cpu")
    np.testing.assert_allclose(read_image(target), expected, atol=1e-4)
    assert _leftovers(tmp_path) == []


def test_a_resume_after_the_input_changed_is_refused(tmp_path, model_file, capsys):
    source = write_tiff(tmp_path / "in.tif", _stack(frames=5))
    target = tmp_path / "out.zarr"
    _interrupt_after(source, target, model_file, 2)
    before = os.stat(source)
    write_tiff(source, _stack(frames=5, seed=1))  # the same name, shape and type
    os.utime(source, ns=(before.st_atime_ns, before.st_mtime_ns))  # and even its time
    assert os.stat(source).st_size == before.st_size
    assert main(_cli(source, target, model_file, "--resume")) == 2
    errors = _errors(capsys)
    assert len(errors) == 1 and "in.tif changed since the interrupted run" in errors[0], errors
    assert not target.exists() and (tmp_path / ".out.zarr.partial").is_dir()


@pytest.mark.slow
def test_a_resume_computes_a_finished_frame_whose_chunk_was_deleted_again(
    tmp_path, model_file, capsys
):
    import shutil

    stack = _stack(frames=4)
    source = write_tiff(tmp_path / "in.tif", stack)
    target = tmp_path / "out.zarr"
    _interrupt_after(source, target, model_file, 2)
    chunk = tmp_path / ".out.zarr.partial" / "c" / "1"  # frame 1's chunk, finished
    assert chunk.exists()
    shutil.rmtree(chunk)
    assert main(_cli(source, target, model_file, "--resume")) == 0
    result = read_image(target)
    assert not np.isnan(result).any()  # was: frame 1 all NaN, exit 0
    assert "1 frames from the interrupted run" in capsys.readouterr().out
    np.testing.assert_allclose(result, denoise(stack, model_file, device="cpu"), atol=1e-4)
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("written", [0, 1])
def test_a_full_disk_while_writing_a_zarr_output_is_one_line_naming_it(
    tmp_path, model_file, capsys, monkeypatch, written
):
    from zarr.storage import LocalStore

    stack = _stack(frames=3)
    source = write_tiff(tmp_path / "in.tif", stack)
    target = tmp_path / "out.zarr"
    real = LocalStore.set

    async def full(self, key, value):
        if key.startswith("c/") and int(key.split("/")[1]) >= written:
            raise OSError(errno.ENOSPC, "No space left on device")
        return await real(self, key, value)

    monkeypatch.setattr(LocalStore, "set", full)
    assert main(_cli(source, target, model_file)) == 2
    errors = _errors(capsys)
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"napari-pinned: error: {target}: no space left on device; ")
    assert not target.exists()
    if written == 0:  # nothing to keep: no temporary store
        assert "nothing was written" in errors[0] and _leftovers(tmp_path) == []
        return
    assert "1 of 3 frames are kept" in errors[0] and "--resume" in errors[0]
    assert _leftovers(tmp_path) == [".out.zarr.partial"]
    monkeypatch.undo()  # space freed: the kept frame is used
    assert main(_cli(source, target, model_file, "--resume")) == 0
    np.testing.assert_allclose(read_image(target), denoise(stack, model_file), atol=1e-4)


# -- schedulers that are not dask's, small frames on workers (issue 21) ---------------------


@contextlib.contextmanager
def _service(kind: str) -> Iterator[int]:
    """A local server of another kind than dask's on a free port: an HTTP server (it
    waits for a request and says nothing) or one greeting like SSH."""
    import http.server
    import socket
    import threading

    if kind == "http":

        class Handler(http.server.BaseHTTPRequestHandler):
            timeout = 300.0  # waits for a request line, as web servers do

            def log_message(self, *args) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield server.server_address[1]
        finally:
            server.shutdown()
            server.server_close()
        return
    listener = socket.create_server(("127.0.0.1", 0))
    clients = []

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.sendall(b"SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13\r\n")
            clients.append(conn)  # held open, as sshd waits for the client's banner

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()
        for conn in clients:
            conn.close()


@pytest.mark.parametrize("kind", ["http", "ssh"])
def test_a_scheduler_address_of_another_service_is_one_line_and_exit_2(
    tmp_path, model_file, capsys, monkeypatch, kind
):
    import threading

    pytest.importorskip("distributed")
    monkeypatch.setattr(scale, "CONNECT_TIMEOUT_S", 2.0)
    source = write_tiff(tmp_path / "in.tif", _stack(frames=2))
    outcome: dict[str, int] = {}
    with _service(kind) as port:
        argv = _cli(source, tmp_path / "o.zarr", model_file, "--scheduler", f"127.0.0.1:{port}")
        # In a thread, so that a hang (> 120 s in Client() before) fails instead of waiting.
        thread = threading.Thread(target=lambda: outcome.update(status=main(argv)), daemon=True)
        thread.start()
        thread.join(timeout=120)
        assert not thread.is_alive(), "denoise --scheduler hung"
    assert outcome["status"] == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "not a dask scheduler" in lines[0], lines
    assert "out of memory" not in lines[0]
    assert not (tmp_path / "o.zarr").exists() and _leftovers(tmp_path) == []


@pytest.mark.slow
def test_frames_smaller_than_the_halo_on_local_workers(tmp_path, model_file):
    pytest.importorskip("distributed")
    stack = _stack(frames=2, shape=(40, 44))  # the tiny model's halo is 48 px
    source = write_tiff(tmp_path / "in.tif", stack)
    target = tmp_path / "out.zarr"
    assert main(_cli(source, target, model_file, "--workers", "1")) == 0
    expected = denoise(stack, model_file, device="cpu")
    np.testing.assert_allclose(read_image(target), expected, atol=1e-3 * np.ptp(expected))
    assert _leftovers(tmp_path) == []


@pytest.mark.slow
def test_a_resume_on_a_cluster_checks_the_frames_it_keeps(cluster, tmp_path, model_file, capsys):
    import shutil

    local, _client = cluster
    stack = _stack(frames=4)
    source = write_tiff(tmp_path / "in.tif", stack)
    target = tmp_path / "out.zarr"
    _interrupt_after(source, target, model_file, 2)
    shutil.rmtree(tmp_path / ".out.zarr.partial" / "c" / "1")  # frame 1, finished
    argv = _cli(source, target, model_file, "--resume", "--scheduler", local.scheduler_address)
    write_tiff(source, _stack(frames=4, seed=1))
    assert main(argv) == 2
    assert "in.tif changed since the interrupted run" in _errors(capsys)[0]
    write_tiff(source, stack)  # the input as it was: its frames are kept
    assert main(argv) == 0
    result = read_image(target)
    np.testing.assert_allclose(result, denoise(stack, model_file, device="cpu"), atol=1e-3)
    assert _leftovers(tmp_path) == []

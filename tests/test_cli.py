"""The command line: exit codes, one-line errors, --json, no partial outputs."""
from __future__ import annotations

import dataclasses
import io
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import codec
from codec.cli import main


@pytest.fixture()
def img_path(tmp_path, cat):
    p = tmp_path / "cat.png"
    Image.fromarray(cat).save(p)
    return p


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_encode_to_a_psnr_target_and_its_note_when_outside_the_band(tmp_path, img_path, capsys, monkeypatch):
    """``--psnr X`` writes a file whose reported PSNR is X within ``PSNR_BAND``, silently; a file
    outside the band (here, a band of 0 dB) is still written, with one note on stderr."""
    from codec import encoder

    inr = tmp_path / "cat.inr"
    code, out, err = run(capsys, "encode", img_path, "-o", inr, "--psnr", 30, "--preset", "fast", "--json", "--quiet")
    d = json.loads(out)
    assert code == 0 and err == "" and abs(d["psnr"] - 30) <= encoder.PSNR_BAND and inr.stat().st_size == d["bytes"]
    monkeypatch.setattr(encoder, "PSNR_BAND", 0.0)
    code, out, err = run(capsys, "encode", img_path, "-o", inr, "--psnr", 30, "--preset", "fast", "--quiet")
    assert code == 0 and "bpp" in out and inr.exists()
    assert err.count("\n") == 1 and "inrc: note:" in err and "outside --psnr 30 ± 0 dB" in err, err


def test_a_bpp_target_outside_its_band_is_noted(tmp_path, img_path, capsys, monkeypatch):
    """``--bpp X``: silent within ``BPP_BAND``; a file outside it (here, a band of 0) is written, with one note."""
    from codec import encoder

    inr = tmp_path / "cat.inr"
    code, out, err = run(capsys, "encode", img_path, "-o", inr, "--bpp", 3, "--preset", "fast", "--quiet")
    assert code == 0 and err == "" and "bpp" in out
    monkeypatch.setattr(encoder, "BPP_BAND", 0.0)
    code, out, err = run(capsys, "encode", img_path, "-o", inr, "--bpp", 3, "--preset", "fast", "--quiet")
    assert code == 0 and "bpp" in out and inr.exists() and err.count("\n") == 1 and "outside --bpp 3 ± 0 %" in err, err


def test_encode_decode_info_export_json(tmp_path, img_path, capsys):
    inr = tmp_path / "cat.inr"
    code, out, err = run(capsys, "encode", img_path, "-o", inr, "--steps", 20, "--json", "--quiet")
    assert code == 0 and err == ""
    d = json.loads(out)
    for k in ("width", "height", "model", "device", "seconds", "steps", "bytes", "bpp", "psnr"):
        assert k in d
    assert d["bytes"] == inr.stat().st_size and d["bpp"] == pytest.approx(d["bytes"] * 8 / (64 * 48), abs=1e-4)
    # the hybrid encoder's search: one stage for medium (the default), its passes and the stage kept
    assert [s["preset"] for s in d["stages"]] == ["medium"] and d["kept_stage"] == "medium"
    assert d["passes"] == d["stages"][0]["passes"] >= 1
    code, out, _ = run(capsys, "info", inr, "--json")
    info = json.loads(out)
    assert code == 0 and info["bytes"] == d["bytes"] and info["macs_per_pixel"] > 0
    code, out, _ = run(capsys, "info", inr)
    assert code == 0 and "MACs/pixel" in out and "header+CRC" in out
    assert f"colour space    {info['colour']}" in out and info["colour"].startswith("rotation")  # format v8
    assert "hybrid: 5 latent levels" in out and "latent values" in out  # 64x48: levels of 64..4 cells
    for args, size in ((["--size", "300x200"], (300, 200)), (["--size", "128"], (128, 96)), (["--scale", "0.5"], (32, 24)), ([], (64, 48))):
        png = tmp_path / "out.png"
        code, out, _ = run(capsys, "decode", inr, "-o", png, *args, "--json")
        assert code == 0 and Image.open(png).size == size and json.loads(out)["width"] == size[0]
    code, out, _ = run(capsys, "export", inr, "-o", tmp_path / "w.safetensors")
    assert code == 0 and (tmp_path / "w.safetensors").stat().st_size > 0


@pytest.mark.parametrize("args,code,msg", [
    (["encode", "{d}/missing.png"], 1, "no such file"),
    (["encode", "{img}", "--quality", "0"], 2, "quality"),
    (["encode", "{img}", "--quality", "5", "--bpp", "1"], 2, "one of --quality"),
    (["encode", "{img}", "--bpp", "1", "--psnr", "30"], 2, "one of --quality"),
    (["encode", "{img}", "--psnr", "5"], 2, "PSNR target"),
    (["encode", "{img}", "--psnr", "thirty"], 2, "thirty"),
    (["encode", "{img}", "--model", "siren", "--psnr", "30"], 2, "hybrid model"),
    (["encode", "{img}", "--steps", "-3"], 2, "steps"),
    (["encode", "{img}", "--model", "gan"], 2, "gan"),
    (["encode", "{img}", "--preset", "turbo"], 2, "turbo"),
    (["encode", "{img}", "--seconds", "0"], 2, "seconds"),
    (["encode", "{img}", "--device", "tpu"], 2, "tpu"),
    (["encode", "{img}", "--threads", "0"], 2, "--threads"),
    (["encode", "{img}", "--threads", "100000"], 2, "--threads"),
    (["encode", "{img}", "--threads", "two"], 2, "two"),
    (["encode", "{img}", "--bogus"], 2, "bogus"),
    (["decode", "{img}", "-o", "{d}/x.png"], 1, "not an .inr file"),
    (["decode", "{d}/missing.inr"], 1, "no such file"),
    (["info", "{img}"], 1, "not an .inr file"),
    (["frobnicate"], 2, "frobnicate"),
])
def test_errors_are_one_line_with_exit_codes(tmp_path, img_path, capsys, args, code, msg):
    args = [a.format(d=tmp_path, img=img_path) for a in args]
    c, _out, err = run(capsys, *args)
    assert c == code
    assert err.count("\n") == 1 and err.startswith("inrc: error:") and msg in err
    assert "Traceback" not in err


def test_decode_size_errors_and_no_partial_output(tmp_path, img_path, capsys):
    inr = tmp_path / "cat.inr"
    assert run(capsys, "encode", img_path, "-o", inr, "--steps", 5, "--quiet")[0] == 0
    out = tmp_path / "keep.png"
    out.write_bytes(b"precious")
    for args, code in ((["--size", "99999"], 1), (["--size", "1000x1000", "--max-pixels", "1000"], 1),
                       (["--size", "0"], 2), (["--size", "big"], 2), (["--scale", "-1"], 2)):
        c, _, err = run(capsys, "decode", inr, "-o", out, *args)
        assert c == code and err.startswith("inrc: error:"), args
        assert out.read_bytes() == b"precious"
    bad = tmp_path / "bad.inr"
    data = bytearray(inr.read_bytes())
    data[-10] ^= 4
    bad.write_bytes(bytes(data))
    c, _, err = run(capsys, "decode", bad, "-o", out)
    assert c == 1 and "checksum" in err and out.read_bytes() == b"precious"
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".part")]
    c, _, _ = run(capsys, "decode", inr, "-o", out)
    assert c == 0 and Image.open(out).size == (64, 48)  # replaced only on success


@pytest.fixture()
def torch_threads():
    """Restore torch's thread count after a test that sets it (the tests share one process)."""
    import torch

    n = torch.get_num_threads()
    yield n
    torch.set_num_threads(n)


def test_threads_option_sets_torch_threads(tmp_path, img_path, capsys, torch_threads):
    import torch

    inr = tmp_path / "cat.inr"
    code, out, err = run(capsys, "encode", img_path, "-o", inr, "--preset", "fast", "--threads", 1, "--json", "--quiet")
    assert code == 0 and err == "" and json.loads(out)["threads"] == 1 and torch.get_num_threads() == 1
    code, out, _ = run(capsys, "encode", img_path, "-o", inr, "--preset", "fast", "--json", "--quiet")
    assert code == 0 and json.loads(out)["threads"] == 1  # the default keeps what the process has


@pytest.mark.parametrize("share", ["FIRST_RDOQ_SHARE", "FIRST_L1_SHARE"])
def test_encode_notes_a_time_cap_that_cut_the_first_pass_short(tmp_path, img_path, capsys, monkeypatch, share):
    import codec.encoder

    inr = tmp_path / "cat.inr"
    code, out, err = run(capsys, "encode", img_path, "-o", inr, "--preset", "fast", "--basis", "pyramid", "--json", "--quiet")
    d = json.loads(out)
    assert code == 0 and err == "" and d["steps"] >= 1 and d["first_pass_cut_short"] is False
    # the first pass's RDOQ sweeps or L1 refit stopped at its start: what an oversubscribed machine
    # does to `fast` (two encodes at two threads each on two cores: 0-1 sweeps of 4)
    monkeypatch.setattr(codec.encoder, share, 0.0)
    code, out, err = run(capsys, "encode", img_path, "-o", inr, "--preset", "fast", "--basis", "pyramid", "--json",
                         "--quiet")
    d = json.loads(out)
    assert code == 0 and d["first_pass_cut_short"] is True and inr.stat().st_size == d["bytes"]
    assert (d["steps"] == 0) == (share == "FIRST_RDOQ_SHARE")
    assert err.count("\n") == 1 and err.startswith("inrc: note:") and "first pass short" in err and "--threads" in err


def test_basis_option_picks_the_basis_and_info_names_it(tmp_path, img_path, capsys):
    """``--basis wavelet`` writes a version-10 wavelet file (``fast``'s default), ``--basis pyramid``
    the pyramid; ``inrc info`` names the basis; a basis with an MLP model is a usage error."""
    inr = tmp_path / "cat.inr"
    for basis, text in (("wavelet", "levels of CDF 9/7 subbands (wavelet basis)"), ("pyramid", "latent levels")):
        code, out, err = run(capsys, "encode", img_path, "-o", inr, "--basis", basis, "--preset", "fast", "--json", "--quiet")
        assert code == 0 and err == "" and json.loads(out)["basis"] == basis
        code, out, _ = run(capsys, "info", inr)
        assert code == 0 and text in out and "format version  10" in out
        code, out, _ = run(capsys, "info", inr, "--json")
        assert json.loads(out)["basis"] == basis
    code, out, _ = run(capsys, "encode", img_path, "-o", inr, "--preset", "fast", "--json", "--quiet")
    assert json.loads(out)["basis"] == "wavelet" and json.loads(out)["seconds"] < 20
    code, _, err = run(capsys, "encode", img_path, "-o", tmp_path / "s.inr", "--model", "siren", "--basis", "wavelet")
    assert code == 2 and err.count("\n") == 1 and "basis" in err and not (tmp_path / "s.inr").exists()
    code, _, err = run(capsys, "encode", img_path, "-o", tmp_path / "s.inr", "--basis", "dct")
    assert code == 2 and "dct" in err and not (tmp_path / "s.inr").exists()


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
def test_unavailable_device_is_a_usage_error_for_every_model(tmp_path, img_path, capsys):
    for model in ("hybrid", "siren"):
        c, _, err = run(capsys, "encode", img_path, "-o", tmp_path / "x.inr", "--model", model, "--device", "cuda")
        assert c == 2 and "CUDA is not available" in err and not (tmp_path / "x.inr").exists()
    # the wavelet basis runs in numpy, but an unavailable device is refused all the same
    c, _, err = run(capsys, "encode", img_path, "-o", tmp_path / "x.inr", "--preset", "fast", "--device", "cuda")
    assert c == 2 and "CUDA is not available" in err and not (tmp_path / "x.inr").exists()


def test_info_names_latent_levels_of_a_version_1_file(capsys):
    v1 = Path(__file__).parent / "data" / "golden_v1_hybrid.inr"
    code, out, _ = run(capsys, "info", v1)
    assert code == 0 and "pyramid: 4 latent levels" in out and "latent values" in out
    assert "colour space    YCbCr (JFIF)" in out


def test_console_script_in_subprocess(tmp_path):
    """The real process: non-zero exit and no traceback for a corrupt file."""
    bad = tmp_path / "bad.inr"
    bad.write_bytes(b"INR\x01" + bytes(40))
    r = subprocess.run([sys.executable, "-m", "codec", "decode", str(bad), "-o", str(tmp_path / "o.png")],
                       capture_output=True, text=True, check=False)
    assert r.returncode == 1 and r.stderr.startswith("inrc: error:") and "Traceback" not in r.stderr
    assert not (tmp_path / "o.png").exists()
    r = subprocess.run([sys.executable, "-m", "codec", "--version"], capture_output=True, text=True, check=False)
    assert r.returncode == 0 and "inrc" in r.stdout


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_streamed_png_matches_decoder(tmp_path, cat, capsys, channels):
    import codec

    arr = {1: cat[:, :, 0], 3: cat, 4: np.dstack([cat, cat[:, :, 1]])}[channels]
    data = codec.encode(arr, steps=10)
    inr = tmp_path / "x.inr"
    inr.write_bytes(data)
    for size in ("64x48", "100x33"):
        png = tmp_path / "x.png"
        assert run(capsys, "decode", inr, "-o", png, "--size", size)[0] == 0
        np.testing.assert_array_equal(np.asarray(Image.open(png)), np.asarray(codec.decode(data, size=size)))


class _Terminal(io.StringIO):
    """A stderr that says it is a terminal, keeping what is written to it."""

    def isatty(self) -> bool:
        return True


def test_hybrid_progress_shows_its_stages_on_a_terminal_only(cat, monkeypatch):
    """The hybrid encoder draws a time bar with its stage, the inner loop's position and the best
    file so far, on a terminal and not with ``quiet``; the bar is removed when the encode ends."""
    from codec import progress

    monkeypatch.setattr(progress.TimeProgress, "MIN_INTERVAL", 0.0)  # draw every tick
    term = _Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    r = codec.encode_image(cat, preset="medium", basis="pyramid", quality=60, seconds=100.0, quiet=False)
    frames = term.getvalue().split("\r")
    for text in ("medium pass 1: L1 1/250:", "medium pass 1: RDOQ sweep 1/8:", "medium pass 1: level filters:",
                 "medium pass 1: coding:", "medium pass 2 (refit): L1 1/100:", "verifying:"):
        assert any(f.startswith(text) and "/100 s" in f for f in frames), text
    best = [re.search(r", best ([\d,]+) B ([\d.]+) dB", f) for f in frames]
    last = [m for m in best if m][-1]
    assert int(last[1].replace(",", "")) == len(r.data)
    assert abs(float(last[2]) - r.psnr) < 0.006  # the encoder's 8-bit error, which the verification decode repeats
    assert frames[-1] == "" and frames[-2].strip() == ""  # the bar is cleared at the end
    term.seek(0)
    term.truncate()
    codec.encode_image(cat, preset="fast", basis="pyramid", quality=60, quiet=True)
    assert term.getvalue() == ""
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # not a terminal
    codec.encode_image(cat, preset="fast", basis="pyramid", quality=60, quiet=False)
    assert sys.stderr.getvalue() == ""


def test_mlp_progress_counts_steps_on_a_terminal(cat, monkeypatch):
    """The MLP encoders' bar counts training steps and shows the training PSNR."""
    term = _Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    codec.encode_image(cat, model="siren", steps=40, quiet=False)
    frames = term.getvalue().split("\r")
    assert any(re.match(r"fitting:.*\d+/40 .* dB", f) for f in frames)
    assert frames[-1] == "" and frames[-2].strip() == ""


@pytest.mark.parametrize("took, noted", [(300.0, True), (120.0, False)])
def test_an_encode_over_its_seconds_budget_is_noted_on_stderr(tmp_path, img_path, capsys, monkeypatch, took, noted):
    """``--seconds`` bounds the search, not the work every encode needs; an encode that took much
    longer (here: made to report ``took`` seconds for ``--seconds 100``) says so in one line on
    stderr, and still succeeds with its output written and its JSON on stdout unchanged. The budget
    is one the tiny image's `fast` pass always fits, so no other note (a first pass cut short on a
    slow machine) can appear."""
    from codec import api

    real = api.encode_image
    monkeypatch.setattr(api, "encode_image", lambda *a, **k: dataclasses.replace(real(*a, **k), seconds=took))
    inr = tmp_path / "cat.inr"
    code, out, err = run(capsys, "encode", img_path, "-o", inr, "--preset", "fast", "--seconds", 100, "--json", "--quiet")
    assert code == 0 and inr.exists() and json.loads(out)["seconds"] == took
    if noted:
        assert err.count("\n") == 1 and err.startswith("inrc: note: the encode took 300.0 s, over --seconds 100:")
    else:
        assert err == ""


class _Stdin(io.TextIOWrapper):
    """A standard input holding ``data``, as a pipe or a redirected file gives it."""

    def __init__(self, data: bytes, tty: bool = False):
        super().__init__(io.BytesIO(data))
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


def test_standard_input_and_output(tmp_path, img_path, capsysbinary, monkeypatch):
    """``-`` is standard input or output, as for cwebp and cjxl: the file goes to stdout, the
    report to stderr, and every command reads stdin."""
    def run_bin(*args, stdin: bytes | None = None):
        if stdin is not None:
            monkeypatch.setattr(sys, "stdin", _Stdin(stdin))
        code = main([str(a) for a in args])
        return (code, *capsysbinary.readouterr())

    code, inr, err = run_bin("encode", "-", "-o", "-", "--preset", "fast", "--quiet", stdin=img_path.read_bytes())
    assert code == 0 and inr[:3] == b"INR" and err.decode().startswith(f"stdout: 64x48 hybrid {len(inr)} bytes")
    ref = tmp_path / "ref.inr"
    assert run_bin("encode", img_path, "-o", ref, "--preset", "fast", "--quiet")[0] == 0
    assert ref.read_bytes() == inr  # the same encode as from the file
    code, png, err = run_bin("decode", "-", "-o", "-", "--size", "100x33", stdin=inr)
    assert code == 0 and err.decode().startswith("stdout: 100x33")
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(png))), np.asarray(codec.decode(inr, size="100x33")))
    code, out, _ = run_bin("info", "-", "--json", stdin=inr)
    assert code == 0 and json.loads(out)["bytes"] == len(inr)
    code, out, _ = run_bin("info", "-", stdin=inr)
    assert code == 0 and out.decode().startswith("file            stdin\n")
    code, st, err = run_bin("export", ref, "-o", "-")
    assert code == 0 and err.decode().startswith("stdout: ") and st == _export_bytes(tmp_path, ref)


def _export_bytes(tmp_path, inr) -> bytes:
    out = tmp_path / "w.safetensors"
    assert main(["export", str(inr), "-o", str(out)]) == 0
    return out.read_bytes()


@pytest.fixture(scope="module")
def fast_cat(cat) -> bytes:
    """A `fast` file of the cat, encoded once for the tests that need any valid file."""
    return codec.encode(cat, preset="fast")


@pytest.mark.parametrize("args,stdin,code,msg", [
    (["encode", "-"], b"", 2, "needs -o FILE"),
    (["decode", "-"], b"", 2, "needs -o FILE"),
    (["encode", "{img}", "-o", "-", "--json"], None, 2, "--json and -o -"),
    (["decode", "-", "-o", "-", "--json"], b"", 2, "--json and -o -"),
    (["encode", "-", "-o", "{d}/x.inr"], b"", 1, "standard input is empty"),
    (["encode", "-", "-o", "{d}/x.inr"], b"not an image", 1, "stdin: not a supported image file"),
    (["decode", "-", "-o", "{d}/x.png"], b"\x89PNG\r\n\x1a\n" + bytes(30), 1, "not an .inr file"),
    (["info", "-"], None, 2, "standard input is a terminal"),
    (["encode", "{img}", "-o", "-"], "tty", 2, "standard output is a terminal"),
    (["decode", "{d}/ref.inr", "-o", "-"], "tty", 2, "standard output is a terminal"),
])
def test_standard_input_and_output_errors(tmp_path, img_path, capsys, monkeypatch, args, stdin, code, msg, fast_cat):
    """Each misuse of ``-`` is one line and a usage or data exit code, before any work is done;
    nothing is written to stdout."""
    from codec import api

    (tmp_path / "ref.inr").write_bytes(fast_cat)
    monkeypatch.setattr(api, "encode_image", lambda *a, **k: pytest.fail("encoded"))
    if stdin == "tty":  # standard output is the terminal
        monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    else:
        monkeypatch.setattr(sys, "stdin", _Stdin(b"", tty=True) if stdin is None else _Stdin(stdin))
    c, out, err = run(capsys, *[a.format(d=tmp_path, img=img_path) for a in args])
    assert c == code and out == "" and err.count("\n") == 1 and err.startswith("inrc: error:") and msg in err, err
    assert sorted(os.listdir(tmp_path)) == sorted([img_path.name, "ref.inr"])  # nothing written, no temporary left


def test_output_directory_is_checked_before_the_encode(tmp_path, img_path, capsys, monkeypatch):
    """A missing output directory, or an output that is a directory, fails at once, not after
    minutes of encoding."""
    from codec import api

    monkeypatch.setattr(api, "encode_image", lambda *a, **k: pytest.fail("encoded"))
    for out, msg in ((tmp_path / "no" / "x.inr", "does not exist"), (tmp_path, "is a directory")):
        c, _, err = run(capsys, "encode", img_path, "-o", out)
        assert c == 1 and msg in err and err.count("\n") == 1


def test_a_pipe_between_two_processes(tmp_path, img_path):
    """The real thing: ``inrc encode - -o - < cat.png | inrc decode - -o - > out.png``."""
    cmd = [sys.executable, "-m", "codec"]
    enc = subprocess.run([*cmd, "encode", "-", "-o", "-", "--preset", "fast", "--quiet"], input=img_path.read_bytes(),
                         capture_output=True, check=False)
    assert enc.returncode == 0 and enc.stdout[:3] == b"INR" and enc.stderr.startswith(b"stdout: 64x48 hybrid")
    dec = subprocess.run([*cmd, "decode", "-", "-o", "-"], input=enc.stdout, capture_output=True, check=False)
    assert dec.returncode == 0 and Image.open(io.BytesIO(dec.stdout)).size == (64, 48)
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(dec.stdout))), np.asarray(codec.decode(enc.stdout)))
    bad = subprocess.run([*cmd, "decode", "-", "-o", "-"], input=enc.stdout[:-5], capture_output=True, check=False)
    assert bad.returncode == 1 and bad.stdout == b"" and bad.stderr.count(b"\n") == 1


def _workers(pid: int) -> set[int]:
    """The multiprocessing workers among ``pid``'s child processes (Linux: /proc)."""
    out = set()
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        for child in children.read_text().split():
            cmdline = Path(f"/proc/{child}/cmdline")
            if cmdline.exists() and b"spawn_main" in cmdline.read_bytes():
                out.add(int(child))
    return out


def _wait_for(what, seconds: float = 90.0):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        got = what()
        if got:
            return got
        time.sleep(0.1)
    pytest.fail("timed out")


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finds the workers in /proc")
def test_sigterm_ends_bench_and_its_workers(tmp_path):
    """SIGTERM to ``inrc bench`` ends it with one line and exit code 143, and its worker processes
    with it: they used to run on until their encodes ended (minutes under `slow`)."""
    import signal

    import skimage.data

    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(skimage.data.astronaut()[:256, :256]).save(folder / "a.png")
    p = subprocess.Popen([sys.executable, "-m", "codec", "bench", str(folder), "--codecs", "inrc",
                          "--inrc-settings", "slow:preset=slow,seconds=600", "--inrc-qualities", "70",
                          "--out", str(tmp_path / "out"), "--jobs", "1", "--quiet"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        workers = _wait_for(lambda: _workers(p.pid))
        time.sleep(1.0)
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=60)
    finally:
        p.kill()
    assert p.returncode == 143 and err.decode().strip() == "inrc: error: terminated", err
    _wait_for(lambda: not any(Path(f"/proc/{w}").exists() and b"spawn_main" in Path(f"/proc/{w}/cmdline").read_bytes()
                              for w in workers), 20)


def test_sigterm_during_an_encode_leaves_no_file(tmp_path):
    """A terminated encode exits 143 with one line, and leaves neither the output nor a temporary file."""
    import signal

    import skimage.data

    src = tmp_path / "a.png"
    Image.fromarray(skimage.data.astronaut()[:256, :256]).save(src)
    out = tmp_path / "out" / "a.inr"
    out.parent.mkdir()
    p = subprocess.Popen([sys.executable, "-m", "codec", "encode", str(src), "-o", str(out), "--preset", "slow"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(4.0)
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=60)
    finally:
        p.kill()
    assert p.returncode == 143 and err.decode().strip().endswith("inrc: error: terminated"), err
    assert list(out.parent.iterdir()) == []


def test_decode_crop(tmp_path, capsys):
    """``--crop X,Y,W,H`` renders a region (its own size, or --size / --scale of it); a crop outside
    the image or malformed is a usage error, and nothing is written."""
    inr = Path(__file__).parent / "data" / "golden_v9_post.inr"
    out = tmp_path / "crop.png"
    code, stdout, _ = run(capsys, "decode", inr, "-o", out, "--crop", "4,3,20,10", "--scale", 2.5, "--json")
    d = json.loads(stdout)
    assert code == 0 and (d["width"], d["height"]) == (50, 25) and d["crop"] == [4, 3, 20, 10]
    assert Image.open(out).size == (50, 25)
    code, stdout, _ = run(capsys, "decode", inr, "-o", out, "--json")
    assert code == 0 and json.loads(stdout)["crop"] is None
    for crop, msg in (("4,3,20", "X,Y,W,H"), ("4,3,2000,10", "not inside"), ("4,3,-2,10", "above 0")):
        out.unlink(missing_ok=True)
        c, _, err = run(capsys, "decode", inr, "-o", out, "--crop", crop)
        assert c == 2 and msg in err and err.count("\n") == 1 and not out.exists()

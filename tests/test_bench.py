"""`inrc bench` on a tiny folder: outputs in the promised schema, caching, errors."""
from __future__ import annotations

import csv
import json

import pytest
import skimage.data
from PIL import Image

from codec import bench
from codec.cli import main


@pytest.fixture(autouse=True)
def one_probe(monkeypatch):
    """One speed-probe encode per run instead of two, to keep the suite short."""
    monkeypatch.setattr(bench, "SPEED_PROBE_RUNS", 1)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("imgs")
    for name, im in (("a.png", skimage.data.astronaut()), ("b.png", skimage.data.coffee())):
        Image.fromarray(im).resize((40, 32)).save(d / name)
    (d / "notes.txt").write_text("not an image")
    return d


def test_bench_outputs_and_resume(folder, tmp_path, capsys):
    out = tmp_path / "res"
    args = ["bench", str(folder), "--codecs", "inrc,jpeg,webp", "--inrc-settings", "tiny:preset=fast,basis=pyramid,steps=2",
            "--inrc-qualities", "30,50,70,90", "--out", str(out), "--quiet"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "BD-rate vs JPEG" in printed
    for name in ("inrc-tiny", "jpeg", "webp"):
        doc = json.loads((out / f"{name}.json").read_text())
        assert doc["name"] == name and doc["description"]
        res = doc["results"]
        n = len(bench.CLASSIC_SETTINGS.get(name, [0, 0, 0, 0]))
        assert all(len(res[k]) == n for k in ("bpp", "psnr-rgb", "ms-ssim-rgb", "encoding_time", "decoding_time"))
        assert res["bpp"] == sorted(res["bpp"])
    rows = list(csv.DictReader((out / "per_image.csv").open()))
    assert len(rows) == 2 * (4 + len(bench.CLASSIC_SETTINGS["jpeg"]) + len(bench.CLASSIC_SETTINGS["webp"]))
    jpeg_rows = [r for r in rows if r["codec"] == "jpeg" and r["image"] == "a.png"]
    assert all(float(r["bpp"]) > 0 and 10 < float(r["psnr"]) < 60 for r in jpeg_rows)
    assert all(r["encoder_stats"] == "" for r in jpeg_rows)
    # the hybrid's rows carry its encoder's stats: `fast` runs one pass and no refit
    stats = [json.loads(r["encoder_stats"]) for r in rows if r["codec"] == "inrc-tiny"]
    assert len(stats) == 8 and all(s["preset"] == "fast" and s["passes"] == 1 and s["refits_kept"] == 0 for s in stats)
    enc = json.loads((out / "inrc-tiny.json").read_text())["encoder"]
    assert enc == {"passes_median": [1.0] * 4, "images_with_refit_kept": [0] * 4}
    s = json.loads((out / "summary.json").read_text())
    assert s["bd_rate_percent"]["jpeg"]["jpeg"] == 0.0
    assert s["images"] == ["a.png", "b.png"] and s["code_version"]
    assert (out / "rd.png").stat().st_size > 10_000
    # the machine's speed before the inrc encodes, kept and printed
    probe = s["machine"]["speed_probe"]
    assert len(probe["seconds"]) == 1 and 0 < probe["min"] == probe["seconds"][0] < 60 and "astronaut" in probe["workload"]
    assert f"speed probe {probe['min']:.2f} s" in printed
    # Resume: a second run finds everything cached and does no work, not even the probe.
    before = {p.name for p in (out / "cache").iterdir()}
    assert main(args) == 0
    assert {p.name for p in (out / "cache").iterdir()} == before
    s = json.loads((out / "summary.json").read_text())
    assert s["wall_seconds_this_run"] < 5 and "speed_probe" not in s["machine"]
    assert "speed probe" not in capsys.readouterr().out


def test_summary_means_per_setting():
    recs = [{"image": i, "codec": "x", "setting": "1", "bpp": b, "psnr": p, "mse": m, "ms_ssim": None,
             "encoding_time": 1.0, "decoding_time": 0.1} for i, b, p, m in (("a", 0.2, 30.0, 65.03), ("b", 0.4, 20.0, 650.3))]
    (pt,) = bench.summarize(recs)["x"]
    assert pt["bpp"] == pytest.approx(0.3) and pt["psnr"] == pytest.approx(25.0)
    assert pt["psnr_of_mean_mse"] < pt["psnr"]  # Cool-chic's convention is lower


def test_bd_rates_on_ms_ssim_in_db(capsys, monkeypatch, folder, tmp_path):
    """BD-rates on MS-SSIM use -10 log10(1 - MS-SSIM) per point, as CompressAI does; a curve
    without MS-SSIM (images under 161 px) is left out; the command prints them beside PSNR's."""
    from codec.bdrate import bd_rate
    from codec.metrics import PSNR_CAP, ms_ssim_db

    assert ms_ssim_db(0.99) == pytest.approx(20.0) and ms_ssim_db(0.9) == pytest.approx(10.0)
    assert ms_ssim_db(1.0) == PSNR_CAP
    ref = [{"bpp": b, "psnr": 30.0 + i, "ms_ssim": m} for i, (b, m) in enumerate(((0.2, 0.9), (0.4, 0.95), (0.8, 0.98), (1.6, 0.99)))]
    test = [{**p, "bpp": p["bpp"] * 0.8} for p in ref]  # the same quality for 20 % less rate
    small = [{**p, "ms_ssim": None} for p in ref]
    t = bench.bd_table_ms_ssim({"ref": ref, "test": test, "small": small})
    assert set(t["bd_rate_percent_ms_ssim"]) == {"ref", "test"}
    assert t["bd_rate_percent_ms_ssim"]["test"]["ref"] == pytest.approx(-20.0, abs=0.01)
    bent = [{**p, "ms_ssim": 1 - (1 - p["ms_ssim"]) * 0.9} for p in ref]  # MS-SSIM better, PSNR not
    t = bench.bd_table_ms_ssim({"ref": ref, "bent": bent})
    db = [ms_ssim_db(p["ms_ssim"]) for p in ref]
    expected = bd_rate([p["bpp"] for p in ref], db, [p["bpp"] for p in bent], [ms_ssim_db(p["ms_ssim"]) for p in bent])
    assert t["bd_rate_percent_ms_ssim"]["bent"]["ref"] == pytest.approx(round(expected, 2)) and expected < 0
    assert bench.bd_table({"ref": ref, "bent": bent})["bd_rate_percent"]["bent"]["ref"] == pytest.approx(0.0, abs=0.01)
    summary = {"images": ["a.png"], "wall_seconds_this_run": 1.0,
               "bd_rate_percent": {"jpeg": {"jpeg": 0.0}, "inrc-x": {"jpeg": -40.0}, "inrc-y": {"jpeg": -10.0}},
               "bd_rate_percent_ms_ssim": {"jpeg": {"jpeg": 0.0}, "inrc-x": {"jpeg": -30.5}}}
    monkeypatch.setattr(bench, "run", lambda *a, **k: summary)
    assert main(["bench", str(folder), "--out", str(tmp_path / "o"), "--quiet"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert any(ln.strip() == "inrc-x           BD-rate vs JPEG -40.0 % (MS-SSIM -30.5 %)" for ln in out), out
    assert any(ln.strip() == "inrc-y           BD-rate vs JPEG -10.0 %" for ln in out), out


def test_bd_vs_published_anchors_uses_each_anchors_psnr_convention():
    pts = [{"bpp": b, "psnr": p, "psnr_of_mean_mse": p - 0.5} for b, p in
           ((0.1, 25.0), (0.2, 28.0), (0.4, 31.0), (0.8, 34.0), (1.6, 37.0))]
    bpp, psnr = [p["bpp"] for p in pts], [p["psnr"] for p in pts]
    anchors = {"same": (bpp, psnr, "src1"),
               "double rate": ([2 * b for b in bpp], psnr, "src2"),
               f"same, lower {bench.MEAN_MSE_LABEL}": (bpp, [q - 0.5 for q in psnr], "src3"),
               "no overlap": (bpp, [q + 50 for q in psnr], "src4")}
    vs = bench.bd_vs_anchors({"ours": pts}, anchors)
    r, d = vs["bd_rate_percent"]["ours"], vs["bd_psnr_db"]["ours"]
    assert r["same"] == 0.0 and d["same"] == 0.0
    assert r["double rate"] == pytest.approx(-50.0, abs=0.01) and d["double rate"] > 0
    # compared with our PSNR of the mean MSE, which is 0.5 dB lower too: the same curve
    assert r[f"same, lower {bench.MEAN_MSE_LABEL}"] == 0.0
    assert r["no overlap"] is None and d["no overlap"] is None
    assert vs["sources"]["double rate"] == "src2"


def test_bench_on_the_kodak_names_reports_published_curves(tmp_path, capsys, monkeypatch):
    """``summary.json`` gets ``vs_published`` (and the command prints it for inrc curves) only when
    the folder holds exactly the 24 Kodak images: their names, at Kodak's size either way round
    (768x512, here a pretend 24x16 to keep the test fast)."""
    from codec import bench

    monkeypatch.setattr(bench, "KODAK_PIXELS", 24 * 16)
    d = tmp_path / "kodak"
    d.mkdir()
    im = Image.fromarray(skimage.data.astronaut()).resize((24, 16))
    for i in range(1, 25):
        (im.rotate(15 * i) if i != 7 else im.transpose(Image.Transpose.ROTATE_90)).save(d / f"kodim{i:02d}.png")
    out = tmp_path / "r"
    assert main(["bench", str(d), "--codecs", "jpeg", "--out", str(out), "--quiet"]) == 0
    vs = json.loads((out / "summary.json").read_text())["vs_published"]
    assert set(vs["bd_rate_percent"]) == {"jpeg"}
    assert any(k.startswith("VTM") for k in vs["sources"])  # the anchors shipped in the package
    (d / "kodim24.png").unlink()
    assert main(["bench", str(d), "--codecs", "jpeg", "--out", str(out), "--quiet"]) == 0  # cached
    assert "vs_published" not in json.loads((out / "summary.json").read_text())
    # the 24 names, but one image of another size: not the Kodak set
    im.resize((12, 8)).save(d / "kodim24.png")
    assert main(["bench", str(d), "--codecs", "jpeg", "--out", str(tmp_path / "r2"), "--quiet"]) == 0
    assert "vs_published" not in json.loads((tmp_path / "r2" / "summary.json").read_text())


@pytest.mark.parametrize("args,msg", [
    (["--codecs", "gif"], "unknown codec"),
    (["--inrc-qualities", "50,101"], "values in 1..100"),
    (["--inrc-qualities", ","], "values in 1..100"),
    (["--inrc-qualities", "50,60,50"], "a value twice"),
    (["--inrc-settings", "x:colour=red"], "unknown inrc option"),
])
def test_bench_errors(folder, tmp_path, capsys, args, msg):
    assert main(["bench", str(folder), "--out", str(tmp_path / "o"), "--quiet", *args]) == 2
    assert msg in capsys.readouterr().err


@pytest.mark.parametrize("text,msg", [
    (None, "no such file"),
    ("codec,source,bpp\nX,s,0.1\n", "lacks the column(s) psnr"),
    ("codec,source,bpp,psnr\nX,s,0.1,30\nX,s,abc,31\n", "line 3: bpp and psnr must be numbers"),
    ("codec,source,bpp,psnr\nX,s,0,30\n", "line 2: bpp must be positive"),
    (b"\xff\xfe\x00garbage", "cannot read"),
])
def test_bench_bad_anchors_fail_before_the_run(folder, tmp_path, capsys, text, msg):
    """A bad ``--anchors`` file is one line and exit 2 before any image is encoded (not a traceback
    after hours of benchmarking)."""
    f = tmp_path / "anchors.csv"
    if isinstance(text, str):
        f.write_text(text)
    elif text is not None:
        f.write_bytes(text)
    out = tmp_path / "o"
    assert main(["bench", str(folder), "--codecs", "jpeg", "--out", str(out), "--quiet", "--anchors", str(f)]) == 2
    err = capsys.readouterr().err
    assert msg in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (out / "cache").exists() or not any((out / "cache").iterdir())


def test_bench_missing_folder(tmp_path, capsys):
    assert main(["bench", str(tmp_path / "none"), "--quiet"]) == 1
    assert "not a directory" in capsys.readouterr().err


def test_workers_are_spawned_not_forked(folder, tmp_path, monkeypatch):
    """A forked worker of a process whose torch thread pool has run can deadlock (a lock held by a
    parent thread at the fork: the suite hung that way once, hybrid tests before the bench), so the
    bench starts its workers with ``spawn`` — after using torch's threads here, it still finishes."""
    import concurrent.futures

    import torch

    torch.set_num_threads(2)
    torch.ones(512, 512) @ torch.ones(512, 512)  # the intra-op pool has run in this process
    contexts = []
    real = concurrent.futures.ProcessPoolExecutor

    def spy(*args, **kwargs):
        contexts.append(kwargs.get("mp_context"))
        return real(*args, **kwargs)

    monkeypatch.setattr(bench, "ProcessPoolExecutor", spy)
    assert main(["bench", str(folder), "--codecs", "jpeg", "--out",
                 str(tmp_path / "r"), "--jobs", "2", "--quiet"]) == 0
    assert [c.get_start_method() for c in contexts] == ["spawn"]
    assert (tmp_path / "r" / "per_image.csv").exists()


def test_bench_prints_inrc_curves_against_published_ones(folder, tmp_path, monkeypatch, capsys):
    """The command's summary lines: BD-rate vs JPEG for every curve, and vs the published curves for
    the inrc ones when the run has them (only on the 24 Kodak images, see above)."""
    summary = {"images": ["a.png"], "wall_seconds_this_run": 1.0,
               "bd_rate_percent": {"jpeg": {"jpeg": 0.0}, "inrc-x": {"jpeg": -40.0}},
               "vs_published": {"bd_rate_percent": {"jpeg": {"VTM intra (VVC)": 180.0},
                                                    "inrc-x": {"VTM intra (VVC)": 91.97, "Cool-chic 5": None}}}}
    monkeypatch.setattr(bench, "run", lambda *a, **k: summary)
    assert main(["bench", str(folder), "--out", str(tmp_path / "o"), "--quiet"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert any("inrc-x" in ln and "BD-rate vs JPEG -40.0 %" in ln for ln in out)
    published = [ln for ln in out if "published" in ln]
    assert len(published) == 1 and "inrc-x" in published[0]
    assert published[0].endswith("VTM +92.0 %, Cool-chic n/a")


def test_bench_with_one_quality_adds_points_and_says_bd_is_missing(folder, tmp_path, capsys):
    """Fewer than four inrc qualities run (to add a point to earlier runs) with the BD-rates left
    out, and a later run into the same folder takes those encodes from the cache."""
    out = tmp_path / "one"
    base = ["bench", str(folder), "--codecs", "inrc,jpeg", "--inrc-settings", "t:preset=fast,steps=1",
            "--out", str(out), "--quiet"]
    assert main([*base, "--inrc-qualities", "50"]) == 0
    printed = capsys.readouterr().out
    assert "inrc curves have 1 point(s): no BD-rates" in printed and "inrc-t           BD-rate vs JPEG n/a" in printed
    s = json.loads((out / "summary.json").read_text())
    assert s["bd_rate_percent"]["inrc-t"]["jpeg"] is None and s["inrc_qualities"] == [50]
    rows = [r for r in csv.DictReader((out / "per_image.csv").open()) if r["codec"] == "inrc-t"]
    assert sorted((r["image"], r["setting"]) for r in rows) == [("a.png", "50"), ("b.png", "50")]
    cached = {p.name for p in (out / "cache").iterdir()}
    assert main([*base, "--inrc-qualities", "30,50,70,90"]) == 0
    new = {p.name for p in (out / "cache").iterdir()} - cached
    assert len(new) == 2 * 3  # q50 came from the cache
    s = json.loads((out / "summary.json").read_text())
    assert isinstance(s["bd_rate_percent"]["inrc-t"]["jpeg"], float)
    assert "no BD-rates" not in capsys.readouterr().out



def test_jobs_split_the_cpus_this_process_may_use(folder, tmp_path, monkeypatch):
    """``--jobs N`` gives each worker its share of the CPUs in the process's affinity mask (a
    container or ``taskset`` may allow fewer than ``os.cpu_count()``): more threads than CPUs make
    every threaded stage wait on the others (:mod:`codec.runtime`), and the time caps then cut
    encodes short.  The workers run here, in a stand-in pool that records what they were given."""
    import concurrent.futures
    import os

    import torch

    from codec import runtime

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    assert runtime.available_cpus() == 6
    given = []

    class InProcess:
        def __init__(self, *args, **kwargs):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def submit(self, fn, task, threads):
            given.append(threads)
            fut = concurrent.futures.Future()
            fut.set_result(fn(task, threads))
            return fut

    monkeypatch.setattr(bench, "ProcessPoolExecutor", InProcess)
    n = torch.get_num_threads()
    try:
        assert main(["bench", str(folder), "--codecs", "jpeg", "--out", str(tmp_path / "r"), "--jobs", "4", "--quiet"]) == 0
    finally:
        torch.set_num_threads(n)
    assert given and set(given) == {1}  # 6 CPUs // 4 jobs
    machine = json.loads((tmp_path / "r" / "summary.json").read_text())["machine"]
    assert machine["available_cpus"] == 6 and machine["threads_per_job"] == 1 and machine["cpus"] == 64

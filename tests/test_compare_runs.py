"""benchmarks/compare_runs.py: curves of two bench outputs compared on their common images."""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest
from conftest import load_benchmark

from codec import bench
from codec.bdrate import bd_rate


@pytest.fixture(scope="module")
def compare():
    return load_benchmark("compare_runs")


def _write_run(d: Path, curves: dict[str, dict[str, list[tuple[float, float]]]], pixels: int = 768 * 512) -> None:
    """``curves[codec][image]``: (bpp, psnr) per setting, settings 1, 2, 3, ...; images of ``pixels``."""
    d.mkdir()
    with (d / "per_image.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["image", "codec", "setting", "bytes", "bpp", "psnr", "mse", "ms_ssim",
                                          "encoding_time", "decoding_time"])
        w.writeheader()
        for codec, per in curves.items():
            for image, pts in per.items():
                for s, (bpp, psnr) in enumerate(pts, 1):
                    w.writerow({"image": image, "codec": codec, "setting": s, "bytes": bpp * pixels / 8, "bpp": bpp,
                                "psnr": psnr,
                                "mse": 255**2 / 10 ** (psnr / 10), "ms_ssim": "", "encoding_time": 1.0 + s,
                                "decoding_time": 0.1})


BASE = [(0.1, 25.0), (0.2, 28.0), (0.4, 31.0), (0.8, 34.0), (1.6, 37.0)]


def test_compare_on_common_images(compare, tmp_path, monkeypatch, capsys):
    half = [(b / 2, p) for b, p in BASE]
    # run a: images x and y complete; run b: x complete, y missing a setting, z only in b
    _write_run(tmp_path / "a", {"ref": {"x.png": BASE, "y.png": BASE}})
    _write_run(tmp_path / "b", {"test": {"x.png": half, "y.png": half[:4], "z.png": half}})
    out = tmp_path / "cmp.json"
    monkeypatch.setattr(sys, "argv", ["compare_runs", f"ref={tmp_path / 'a'}:ref", f"test={tmp_path / 'b'}:test",
                                      "--per-image", "ref", "--out", str(out)])
    compare.main()
    res = json.loads(out.read_text())
    assert res["images"] == ["x.png"]  # the only image complete in both runs
    assert res["bd_rate_percent"]["test"]["ref"] == pytest.approx(-50.0, abs=0.01)  # half the rate
    assert res["bd_rate_percent"]["ref"]["test"] == pytest.approx(100.0, abs=0.01)
    assert res["per_image_vs"]["bd_rate_percent"]["test"] == {"x.png": pytest.approx(-50.0, abs=0.01)}
    assert res["encoding_time"]["test"] == {"median": 4.0, "min": 2.0, "max": 6.0}
    printed = capsys.readouterr().out
    assert "1 images: x.png" in printed
    assert "speed_probe_seconds" not in res and "speed probe" not in printed  # no run has one
    # a run of 0.16.0 or later keeps the machine's speed probe, and the comparison shows it
    (tmp_path / "b" / "summary.json").write_text(json.dumps({"machine": {"speed_probe": {"min": 1.725}}}))
    (tmp_path / "a" / "summary.json").write_text(json.dumps({"machine": {}}))
    compare.main()
    res = json.loads(out.read_text())
    assert res["speed_probe_seconds"] == {"ref": {}, "test": {str(tmp_path / "b"): 1.725}}
    assert "speed probe test: b 1.73 s" in capsys.readouterr().out


def test_plot_draws_the_merged_curves(compare, tmp_path, monkeypatch):
    """``--plot`` writes a PNG of the merged curves (the figure ``inrc bench`` draws for a run), with
    the given title, and passes those curves, labelled as on the command line, to the plot."""
    half = [(b / 2, p) for b, p in BASE]
    _write_run(tmp_path / "a", {"ref": {"x.png": BASE}})
    _write_run(tmp_path / "b", {"test": {"x.png": half}})
    drawn = {}
    real_plot = bench.plot

    def spy(curves, anchors, path, title):
        drawn.update(curves=curves, anchors=anchors, title=title)
        real_plot(curves, anchors, path, title)

    monkeypatch.setattr(bench, "plot", spy)
    png = tmp_path / "rd.png"
    monkeypatch.setattr(sys, "argv", ["compare_runs", f"ref={tmp_path / 'a'}:ref", f"inrc test={tmp_path / 'b'}:test",
                                      "--plot", str(png), "--title", "two runs"])
    compare.main()
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert drawn["title"] == "two runs" and drawn["anchors"] == {}  # one image, not Kodak's 24: no published curves
    assert list(drawn["curves"]) == ["ref", "inrc test"]
    assert [p["bpp"] for p in drawn["curves"]["inrc test"]] == pytest.approx([b for b, _ in half])


def test_curve_means_over_images(compare):
    rows = {i: {str(s): {"bpp": str(b * k), "psnr": str(p + k), "mse": "1.0", "ms_ssim": "",
                         "encoding_time": "1", "decoding_time": "0.1"} for s, (b, p) in enumerate(BASE, 1)}
            for i, k in (("x", 1.0), ("y", 3.0))}
    pts = compare.curve(rows, ["x", "y"])
    bpp, psnr = [p["bpp"] for p in pts], [p["psnr"] for p in pts]
    assert bpp == pytest.approx([b * 2 for b, _ in BASE]) and psnr == pytest.approx([p + 2 for _, p in BASE])
    ref = compare.curve(rows, ["x"])
    table = bench.bd_table({"ref": ref, "test": pts})["bd_rate_percent"]
    assert table["test"]["ref"] == round(bd_rate([p["bpp"] for p in ref], [p["psnr"] for p in ref], bpp, psnr), 2)


def test_runs_are_merged(compare, tmp_path):
    _write_run(tmp_path / "a", {"c": {"x.png": BASE}})
    _write_run(tmp_path / "b", {"c": {"y.png": BASE[:2]}, "other": {"z.png": BASE}})
    label, rows = compare.load(f"lab={tmp_path / 'a'},{tmp_path / 'b'}:c")
    assert label == "lab" and sorted(rows) == ["x.png", "y.png"] and len(rows["y.png"]) == 2


@pytest.mark.parametrize("arg", ["no-equals", "a=dir-without-curve", "a=:curve"])
def test_bad_curve_argument(compare, arg):
    with pytest.raises(SystemExit, match="LABEL=RUN_DIR"):
        compare.load(arg)


def _row(setting: str, nbytes: int, mse_unit: float, pixels: int = 10_000) -> dict:
    return {"setting": setting, "bytes": str(nbytes), "bpp": str(8 * nbytes / pixels), "mse": str(255**2 * mse_unit)}


def test_cost_is_the_encoders_d_plus_lambda_r(compare):
    # quality 45: Delta_0 = 0.6, lambda = 0.25 x 0.36 = 0.09; D = 0.01 x 10,000 pixels x 3 = 300, R = 8,000 bits
    assert compare.cost(_row("45", 1000, 0.01)) == pytest.approx(300 + 0.09 * 8000)
    ref = {"x.png": {"45": _row("45", 1000, 0.01), "60": _row("60", 2000, 0.004)}}
    test = {"x.png": {"45": _row("45", 900, 0.01), "60": _row("60", 2000, 0.005)}}
    res = compare.cost_vs(test, ref, ["x.png"])
    assert res["points"] == 2 and res["worse"] == 1  # fewer bytes at q45, more error at q60
    assert res["per_point_percent"]["x.png:45"] == pytest.approx(100 * ((300 + 0.09 * 7200) / 1020 - 1), abs=1e-3)
    assert res["max_percent"] > 0 > res["min_percent"]
    with pytest.raises(SystemExit, match="not a quality"):
        compare.cost(_row("q=45", 1000, 0.01))


def _anchor_csv(path: Path, rows: dict[str, list[tuple[float, float]]]) -> Path:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["codec", "source", "bpp", "psnr"])
        for name, pts in rows.items():
            w.writerows([name, "somewhere:file@abc", b, p] for b, p in pts)
    return path


def test_published_curves_only_on_the_24_kodak_images(compare, tmp_path, monkeypatch, capsys):
    """On the 24 Kodak images every curve gets a BD-rate against each published curve; on any other
    image set (the published means are over those 24) none."""
    anchors = _anchor_csv(tmp_path / "anchors.csv", {"Pub A": [(b * 2, p) for b, p in BASE]})
    kodak = {f"kodim{i:02d}.png": BASE for i in range(1, 25)}
    _write_run(tmp_path / "k", {"ours": kodak})
    _write_run(tmp_path / "s", {"ours": dict(list(kodak.items())[:23])})
    _write_run(tmp_path / "t", {"ours": kodak}, pixels=512 * 512)  # the names, but not the Kodak images
    for run, expect in (("k", True), ("s", False), ("t", False)):
        out = tmp_path / f"{run}.json"
        monkeypatch.setattr(sys, "argv", ["compare_runs", f"x={tmp_path / run}:ours", "--anchors", str(anchors),
                                          "--out", str(out)])
        compare.main()
        res = json.loads(out.read_text())
        assert ("vs_published" in res) == expect
        assert ("vs published Kodak curves" in capsys.readouterr().out) == expect
    vs = json.loads((tmp_path / "k.json").read_text())["vs_published"]
    assert vs["bd_rate_percent"]["x"]["Pub A"] == pytest.approx(-50.0, abs=0.01)  # half the published rate
    assert vs["sources"] == {"Pub A": "somewhere:file@abc"}


def test_single_points_against_a_curve(compare, tmp_path, monkeypatch, capsys):
    """``--points``: the rate a curve needs for a point's PSNR and the PSNR it reaches at the point's
    rate, interpolated in log rate between the image's own points; ``None`` outside them."""
    pts = [(0.1, 30.0), (0.4, 34.0)]  # log2 rate linear in PSNR: 2 dB per doubling
    _write_run(tmp_path / "a", {"c": {"x.png": pts}})
    _, rows = compare.load(f"c={tmp_path / 'a'}:c")
    res = compare.vs_points(rows, [("x.png", 0.2, 32.0), ("x.png", 0.1, 31.0), ("x.png", 1.0, 33.0),
                                   ("x.png", 0.2, 40.0), ("y.png", 0.2, 32.0)])
    assert res[0]["rate_percent"] == pytest.approx(0.0, abs=0.01) and res[0]["psnr"] == pytest.approx(32.0)
    # 31 dB needs 0.1 x 2^0.5 bpp: 41.4 % more than the point's 0.1; at 0.1 bpp the curve gives 30 dB
    assert res[1]["rate_percent"] == pytest.approx(41.42, abs=0.01) and res[1]["psnr"] == pytest.approx(30.0)
    assert res[2]["psnr"] is None and res[2]["rate_percent"] == pytest.approx(100 * (0.1 * 2**1.5 - 1), abs=0.01)
    assert res[3]["rate_percent"] is None and res[3]["psnr"] == pytest.approx(32.0)
    assert res[4]["rate_percent"] is None and res[4]["psnr"] is None  # image not in the curve
    out = tmp_path / "cmp.json"
    monkeypatch.setattr(sys, "argv", ["compare_runs", f"c={tmp_path / 'a'}:c", "--points", "x.png:0.2:32",
                                      "--out", str(out)])
    compare.main()
    assert json.loads(out.read_text())["vs_points"]["c"][0]["rate_percent"] == pytest.approx(0.0, abs=0.01)
    assert "x@0.2: +0.0 % (32.00 dB)" in capsys.readouterr().out
    for bad in ("x.png:0.2", "x.png:a:32", "x.png:0.2:32:1"):
        with pytest.raises(SystemExit, match="--points: bad point"):
            compare.parse_points(bad)

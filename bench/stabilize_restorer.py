"""Flicker added by the offline restorer on real face GIFs, with and without --stabilize.

For each GIF in ../shared/testdata/faces-animated, runs `gifstream process`
with the classic restorer twice (plain, then --stabilize) and reports the
output's E_warp against the input's (measured with the input's flow and
occlusion mask: a ratio above 1 means restoration added flicker), plus PSNR
and SSIM against the input.

    ./run bench stabilize_restorer.py
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FACES = REPO.parent / "shared" / "testdata" / "faces-animated"


def run(gif: Path, out: Path, stabilize: bool) -> dict[str, float]:
    report = out.with_suffix(".json")
    cmd = [sys.executable, "-m", "gifstream.cli", "process", str(gif), "-o", str(out), "--overwrite", "--quiet"]
    cmd += ["--restorer", "classic", "--flow", "dis", "--metrics", "psnr,ssim,e_warp", "--report", str(report)]
    if stabilize:
        cmd.append("--stabilize")
    subprocess.run(cmd, check=True)
    summary = json.loads(report.read_text())["summary"]
    return {name: summary[name]["mean"] for name in ("e_warp", "e_warp_input", "e_warp_ratio", "psnr", "ssim")}


def main() -> None:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    gifs = sorted(FACES.glob("*.gif"))
    if not gifs:
        sys.exit(f"no face GIFs in {FACES} (../shared/testdata is needed)")
    print("| GIF | E_warp in (×1e3) | out/in plain | out/in stabilised | PSNR plain → stab. | SSIM plain → stab. |")
    print("|---|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for gif in gifs:
            plain = run(gif, Path(tmp) / "plain.gif", stabilize=False)
            stable = run(gif, Path(tmp) / "stable.gif", stabilize=True)
            print(
                f"| {gif.name} | {plain['e_warp_input'] * 1e3:.3f} | {plain['e_warp_ratio']:.3f} | "
                f"{stable['e_warp_ratio']:.3f} | {plain['psnr']:.2f} → {stable['psnr']:.2f} | "
                f"{plain['ssim']:.4f} → {stable['ssim']:.4f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()

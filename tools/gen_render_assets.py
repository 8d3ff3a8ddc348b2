#!/usr/bin/env python3
"""Write the rendering assets of crates/convnet: the viridis colormap table and the font subset.

    pip install matplotlib fonttools
    python3 tools/gen_render_assets.py [--font /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf]

- crates/convnet/src/render/colormap_data.rs: matplotlib's viridis as 256 sRGB bytes
  (matplotlib's colormap data is CC0).
- crates/convnet/assets/DejaVuSans-subset.ttf: DejaVu Sans (Debian's fonts-dejavu-core)
  cut to printable ASCII and Latin-1, so the binary carries about 40 KB instead of 750 KB.
"""

import argparse
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent


def write_viridis():
    from matplotlib import colormaps

    cmap = colormaps["viridis"].resampled(256)
    rows = []
    for i in range(256):
        r, g, b, _ = cmap(i)
        rows.append(f"    [{round(r * 255)}, {round(g * 255)}, {round(b * 255)}],")
    out = ROOT / "crates/convnet/src/render/colormap_data.rs"
    out.write_text(
        "//! matplotlib's viridis, 256 entries (written by tools/gen_render_assets.py).\n\n"
        "pub(super) const VIRIDIS: [[u8; 3]; 256] = [\n" + "\n".join(rows) + "\n];\n"
    )
    print(f"wrote {out.relative_to(ROOT)}")


def write_font(font):
    from fontTools import subset

    out = ROOT / "crates/convnet/assets/DejaVuSans-subset.ttf"
    opts = subset.Options()
    opts.layout_features = ["kern"]
    opts.name_IDs = ["*"]
    opts.notdef_outline = True
    f = subset.load_font(font, opts)
    s = subset.Subsetter(opts)
    s.populate(unicodes=list(range(0x20, 0x7F)) + list(range(0xA0, 0x100)) + [0x2212, 0x2013, 0x2014, 0x00D7])
    s.subset(f)
    subset.save_font(f, str(out), opts)
    print(f"wrote {out.relative_to(ROOT)} ({out.stat().st_size} bytes)")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--font", default="/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
    args = p.parse_args()
    write_viridis()
    write_font(args.font)


if __name__ == "__main__":
    main()

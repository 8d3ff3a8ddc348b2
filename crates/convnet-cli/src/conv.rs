//! `convnet conv`: a convolution on small literal matrices, with every product shown.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Result, bail};
use clap::Args;
use convnet::filter::{self, format_number};
use convnet::names::shorten;
use convnet_core::{Conv2dGeometry, Conv2dParams, Tensor, conv2d, conv2d_grad_input};

use crate::filter::{ConvOptions, PaddingModeArg, parse_padding};

#[derive(Args)]
#[command(after_help = "Examples:
  convnet conv --input \"10,20,30;15,25,35;20,30,40\" --kernel \"1,0,-1;1,0,-1;1,0,-1\" --explain
  convnet conv --input \"1,2,3,4;5,6,7,8;9,10,11,12;13,14,15,16\" --kernel \"1,1;1,1\" --stride 2
  convnet conv --input \"$(printf '1,1,1,1,1,1;%.0s' 1 2 3 4 5 6)\" --kernel \"1,1,1;1,1,1;1,1,1\" --coverage
  convnet conv --input \"1,2;3,4 | 5,6;7,8\" --kernel \"1,0;0,1 | 0,1;1,0\"
  convnet conv --input x.npy --kernel k.npy --padding 1 --padding-mode reflect

Matrices: numbers separated by ',', rows by ';', channels by '|'; a text file of such
rows; or a .npy file ([H, W], [C, H, W] or [1, C, H, W]). A kernel with one plane is applied
to every channel on its own; a kernel with as many planes as the input is summed over the
channels.")]
pub struct ConvArgs {
    /// The input matrix (or a .npy file).
    #[arg(long)]
    input: String,
    /// The kernel matrix (or a .npy file, or a named kernel such as sobel-x).
    #[arg(long)]
    kernel: String,
    /// valid, same, N, H,W or T,B,L,R.
    #[arg(long, default_value = "valid")]
    padding: String,
    #[arg(long, value_enum, default_value_t = PaddingModeArg::Zeros)]
    padding_mode: PaddingModeArg,
    #[command(flatten)]
    conv: ConvOptions,
    /// Print, for each output position, the window under the kernel, the products and their
    /// sum, with the output-size formula filled in.
    #[arg(long)]
    explain: bool,
    /// Print how many times the kernel uses each input pixel.
    #[arg(long)]
    coverage: bool,
}

/// A matrix argument (`what` is its option, "input" or "kernel"): literal text, a text file
/// or a .npy file, as `[C, H, W]`, and the name to show for it.
fn matrix(what: &'static str, text: &str) -> Result<(Tensor, String)> {
    if text.ends_with(".npy") || is_npy(Path::new(text)) {
        let t = convnet::npy::read(Path::new(text))?;
        let dims = match *t.dims() {
            [h, w] => [1, h, w],
            [c, h, w] => [c, h, w],
            [1, c, h, w] => [c, h, w],
            _ => bail!(
                "--{what} {text}: shape {} is not [H, W], [C, H, W] or [1, C, H, W]",
                t.shape()
            ),
        };
        return Ok((t.reshape(dims)?, text.to_string()));
    }
    // (Its errors say which matrix they are about: "invalid input: row 0, ...".)
    let f = match filter::from_spec_as(what, text)? {
        filter::Filter::Kernel(k) => k,
        filter::Filter::Magnitude(..) => {
            bail!("--{what} {text}: a gradient magnitude is not one matrix")
        }
    };
    let name = f.name.clone();
    Ok((
        Tensor::new([f.channels, f.height, f.width], f.values)?,
        name,
    ))
}

/// Whether `path` is a file that starts as a .npy file does (other files are matrices
/// written as text).
fn is_npy(path: &Path) -> bool {
    use std::io::Read as _;
    let mut magic = [0u8; 6];
    path.is_file()
        && std::fs::File::open(path).is_ok_and(|mut f| f.read_exact(&mut magic).is_ok())
        && &magic == b"\x93NUMPY"
}

fn render(values: &[f32], rows: usize, cols: usize, indent: &str) -> Vec<String> {
    let cells: Vec<String> = values.iter().map(|v| format_number(*v)).collect();
    let width = cells.iter().map(String::len).max().unwrap_or(1);
    (0..rows)
        .map(|r| {
            let row: Vec<String> = cells[r * cols..(r + 1) * cols]
                .iter()
                .map(|s| format!("{s:>width$}"))
                .collect();
            format!("{indent}[{}]", row.join(" "))
        })
        .collect()
}

/// `s` padded with spaces to `width` characters. (Not `{:<width$}`: a kernel row can be
/// wider than the 65,535 a format width allows.)
fn pad(s: &str, width: usize) -> String {
    format!("{s}{}", " ".repeat(width.saturating_sub(s.chars().count())))
}

fn size_formula(g: &Conv2dGeometry) -> String {
    let axis = |name: &str,
                input: usize,
                k: usize,
                s: usize,
                d: usize,
                before: usize,
                after: usize,
                out: usize| {
        if d == 1 && before == after {
            format!(
                "{name}: O = floor((W - F + 2P) / S) + 1 = floor(({input} - {k} + 2*{before}) / {s}) + 1 = {out}"
            )
        } else {
            format!(
                "{name}: O = floor((W + P_before + P_after - D(F - 1) - 1) / S) + 1 = floor(({input} + {before} + {after} - {d}*({k} - 1) - 1) / {s}) + 1 = {out}"
            )
        }
    };
    format!(
        "{}\n{}",
        axis(
            "height",
            g.in_hw[0],
            g.kernel[0],
            g.stride[0],
            g.dilation[0],
            g.pad[0],
            g.pad[1],
            g.out_hw[0]
        ),
        axis(
            "width ",
            g.in_hw[1],
            g.kernel[1],
            g.stride[1],
            g.dilation[1],
            g.pad[2],
            g.pad[3],
            g.out_hw[1]
        )
    )
}

/// The window, products and sum of every output position, for one output channel.
fn explain(g: &Conv2dGeometry, x: &Tensor, w: &Tensor, out_channel: usize, y: &Tensor) -> String {
    let [_, c_in, h, wd] = g.input_dims();
    let [_, cg, kh, kw] = g.weight_dims();
    let group = out_channel / g.out_per_group();
    let mut out = String::new();
    for i in 0..g.out_hw[0] {
        for j in 0..g.out_hw[1] {
            let value = y.data()[(out_channel * g.out_hw[0] + i) * g.out_hw[1] + j];
            let _ = writeln!(out, "output ({i}, {j}) = {}", format_number(value));
            let mut terms = Vec::new();
            for c in 0..cg {
                let ci = group * cg + c;
                let mut window = Vec::with_capacity(kh * kw);
                let mut kernel = Vec::with_capacity(kh * kw);
                let mut products = Vec::with_capacity(kh * kw);
                for p in 0..kh {
                    for q in 0..kw {
                        let tap = g.tap([i, j], [p, q]);
                        let xv = tap
                            .input
                            .map_or(0.0, |[r, s]| x.data()[(ci * h + r) * wd + s]);
                        let wv = w.data()
                            [((out_channel * cg + c) * kh + tap.weight[0]) * kw + tap.weight[1]];
                        window.push(xv);
                        kernel.push(wv);
                        products.push(xv * wv);
                        terms.push(xv * wv);
                    }
                }
                let (wl, kl, pl) = (
                    render(&window, kh, kw, ""),
                    render(&kernel, kh, kw, ""),
                    render(&products, kh, kw, ""),
                );
                let wid = [&wl, &kl].map(|v| v.iter().map(String::len).max().unwrap_or(0));
                let w1 = wid[1].max(6);
                if cg > 1 || c_in > 1 {
                    let _ = writeln!(out, "  channel {ci}:");
                }
                let kernel_title = if g.mode == convnet_core::ConvMode::Convolution {
                    "kernel (flipped)"
                } else {
                    "kernel"
                };
                let _ = writeln!(
                    out,
                    "  {}   {}   products",
                    pad("window", wid[0]),
                    pad(kernel_title, w1)
                );
                for r in 0..kh {
                    let (op, eq) = if r == kh / 2 { ("*", "=") } else { (" ", " ") };
                    let _ = writeln!(
                        out,
                        "  {} {op} {} {eq} {}",
                        pad(&wl[r], wid[0]),
                        pad(&kl[r], w1),
                        pl[r]
                    );
                }
            }
            let sum: Vec<String> = terms.iter().map(|t| format_number(*t)).collect();
            let _ = writeln!(
                out,
                "  sum: {} = {}\n",
                sum.join(" + ").replace("+ -", "- "),
                format_number(terms.iter().sum())
            );
        }
    }
    out
}

pub fn run(args: ConvArgs) -> Result<()> {
    let (x, _) = matrix("input", &args.input)?;
    let (k, kernel_name) = matrix("kernel", &args.kernel)?;
    let [c, h, w] = [x.dims()[0], x.dims()[1], x.dims()[2]];
    let [kc, kh, kw] = [k.dims()[0], k.dims()[1], k.dims()[2]];
    let padding = parse_padding(&args.padding)?;
    if padding == convnet_core::Padding::Same && (kh % 2 == 0 || kw % 2 == 0) {
        filter::check_same_padding(
            &filter::Filter::Kernel(filter::Kernel {
                name: kernel_name.clone(),
                channels: kc,
                height: kh,
                width: kw,
                values: k.data().to_vec(),
            }),
            padding,
        )?;
    }
    let base = args.conv.params(padding, args.padding_mode.into())?;
    // One plane: every channel on its own (groups = channels); C planes: summed over channels.
    let (weight, groups) = if kc == 1 {
        let values: Vec<f32> = k.data().iter().copied().cycle().take(c * kh * kw).collect();
        (Tensor::new([c, 1, kh, kw], values)?, c)
    } else if kc == c {
        (k.clone().reshape([1, c, kh, kw])?, 1)
    } else {
        bail!("the kernel has {kc} planes and the input {c} channels: give 1 plane or {c}");
    };
    let params = Conv2dParams::builder()
        .with_stride(base.stride())
        .with_padding(base.padding())
        .with_dilation(base.dilation())
        .with_padding_mode(base.padding_mode())
        .with_mode(base.mode())
        .with_groups(groups)
        .build()?;
    let x4 = x.clone().reshape([1, c, h, w])?;
    let g = params.geometry([1, c, h, w], weight.dims4("conv", "kernel")?)?;
    let y = conv2d(&x4, &weight, None, &params)?;
    let [_, oc, oh, ow] = y.dims4("conv", "output")?;
    if args.explain {
        println!(
            "input {h}x{w}{}, kernel {kh}x{kw} ({}), stride {}x{}, padding top {} bottom {} left {} right {} ({:?}), dilation {}x{}",
            if c > 1 {
                format!(" x {c} channels")
            } else {
                String::new()
            },
            shorten(&kernel_name, 60),
            g.stride[0],
            g.stride[1],
            g.pad[0],
            g.pad[1],
            g.pad[2],
            g.pad[3],
            g.padding_mode,
            g.dilation[0],
            g.dilation[1]
        );
        println!("{}\n", size_formula(&g));
        for ch in 0..oc {
            if oc > 1 {
                println!("output channel {ch}:");
            }
            print!("{}", explain(&g, &x, &weight, ch, &y));
        }
    }
    println!(
        "output {oh}x{ow}{}:",
        if oc > 1 {
            format!(" x {oc} channels")
        } else {
            String::new()
        }
    );
    for ch in 0..oc {
        if oc > 1 {
            println!("channel {ch}:");
        }
        for line in render(&y.data()[ch * oh * ow..(ch + 1) * oh * ow], oh, ow, "  ") {
            println!("{line}");
        }
    }
    if args.coverage {
        // How often each input pixel is read = the input gradient of all-ones outputs through
        // an all-ones kernel (padding reads count for the pixel a reflected border reads).
        let ones = Tensor::full(y.dims().to_vec(), 1.0)?;
        let ones_k = Tensor::full(weight.dims().to_vec(), 1.0)?;
        let counts = conv2d_grad_input(&ones, &ones_k, [1, c, h, w], &params)?;
        let per_channel = (oc / groups.max(1)).max(1) as f32;
        println!(
            "coverage (times each input pixel is used{}):",
            if per_channel > 1.0 {
                ", per output channel"
            } else {
                ""
            }
        );
        let plane: Vec<f32> = counts.data()[..h * w]
            .iter()
            .map(|v| v / per_channel)
            .collect();
        for line in render(&plane, h, w, "  ") {
            println!("{line}");
        }
    }
    Ok(())
}

//! Every kernel against the CPU reference op on seeded random data, at sizes that are not
//! multiples of any tile, and the launchers' refusals of bad sizes.

use crate::util::*;

pub fn linear_forward_matches_reference(dev: &Ctx) {
    let mut r = Rng::new(1);
    // (M, K, N): 1x1, ragged everywhere, one full tile plus one, the model's shapes.
    let shapes = [
        (1, 1, 1),
        (3, 5, 7),
        (65, 33, 129),
        (64, 64, 64),
        (130, 768, 768),
        (37, 768, 3072),
        (19, 3072, 768),
        (5, 128, 30000),
        (257, 40, 200),
    ];
    for dtype in DTYPES {
        // bf16/f16: the tensor-core kernel and the portable one, both against the reference.
        let variants: &[bool] = if dtype == DType::F32 {
            &[false]
        } else {
            &[true, false]
        };
        for &mma in variants {
            for (i, &(m, k, n)) in shapes.iter().enumerate() {
                let act = [
                    None,
                    Some(Activation::Gelu),
                    Some(Activation::GeluTanh),
                    Some(Activation::Tanh),
                ][i % 4];
                let inp = r.vec(m * k, 2.0);
                let w: Vec<f32> = r.vec(n * k, 0.1).iter().map(|&x| dtype.round(x)).collect();
                let bias = r.vec(n, 0.5);
                let mut want = vec![0f32; m * n];
                cpu::linear_forward(&mut want, &inp, &w, Some(&bias), m, k, n, dtype);
                if let Some(a) = act {
                    cpu::activation_forward(&mut want, a);
                }
                let mut out = poisoned(dev, m * n);
                let wd = DeviceMatrix::upload(dev, &w, dtype).unwrap();
                dev.linear_forward_with(
                    &mut out,
                    &up(dev, &inp),
                    &wd,
                    Some(&up(dev, &bias)),
                    m,
                    k,
                    n,
                    act,
                    mma,
                )
                .unwrap();
                let what = format!("linear {dtype} mma={mma} [{m},{k}]x[{n},{k}] {act:?}");
                check(&what, &down(dev, &out), &want, 1e-5);
            }
        }
    }
}

/// The tensor-core product with its output stored as T: the f32 output rounded to T, bit
/// for bit (the same epilogue value, rounded to nearest even).
pub fn linear_forward_to_rounds_the_f32_output(dev: &Ctx) {
    if !dev.attention_uses_mma(DType::BF16, 64) {
        println!("  skipped: no tensor-core kernels on this device");
        return;
    }
    let mut r = Rng::new(6);
    for dtype in [DType::BF16, DType::F16] {
        for &(m, k, n) in &[(1, 8, 3), (130, 768, 2304), (37, 40, 129)] {
            let inp = r.vec(m * k, 2.0);
            let w: Vec<f32> = r.vec(n * k, 0.1).iter().map(|&x| dtype.round(x)).collect();
            let bias = r.vec(n, 0.5);
            let wd = DeviceMatrix::upload(dev, &w, dtype).unwrap();
            let (inp_d, bias_d) = (up(dev, &inp), up(dev, &bias));
            let mut out = poisoned(dev, m * n);
            dev.linear_forward_with(&mut out, &inp_d, &wd, Some(&bias_d), m, k, n, None, true)
                .unwrap();
            let want: Vec<f32> = down(dev, &out).iter().map(|&x| dtype.round(x)).collect();
            let mut half = DeviceMatrix::upload(dev, &vec![f32::NAN; m * n], dtype).unwrap();
            dev.linear_forward_to(&mut half, &inp_d, &wd, Some(&bias_d), m, k, n, None)
                .unwrap();
            let got = down_t(dev, &half);
            assert_eq!(got, want, "linear_forward_to {dtype} [{m},{k}]x[{n},{k}]");
        }
    }
}

/// The tensor-core product reading its activation stored as T (the FFN-out product on the
/// FFN intermediate): against the reference with the operands rounded to T (1e-5), and bit
/// for bit equal to the f32-input kernel on the unrounded activation, which rounds it to T
/// as it stages it. Shapes ragged in M, K (K % 8 != 0: plain loads; K % 8 == 0 but not 32:
/// cp.async with a partial last tile) and N, the model's FFN-out shape, and one activation
/// view off 16-byte alignment.
pub fn linear_forward_from_matches_reference(dev: &Ctx) {
    if !dev.linear_keeps_t(DType::BF16) {
        println!("  skipped: no tensor-core kernels on this device");
        return;
    }
    let mut r = Rng::new(7);
    let shapes = [
        (1, 1, 1, 0),
        (3, 5, 7, 0),
        (130, 33, 129, 0),
        (70, 40, 200, 1),
        (37, 3072, 768, 0),
        (257, 200, 130, 0),
        (4, 768, 3072, 1),
    ];
    for dtype in [DType::BF16, DType::F16] {
        for (i, &(m, k, n, skew)) in shapes.iter().enumerate() {
            let act = [None, Some(Activation::Gelu), Some(Activation::Tanh)][i % 3];
            let ProductCase { inp, w, bias, want } = product_case(&mut r, dtype, (m, k, n), act);
            let wd = DeviceMatrix::upload(dev, &w, dtype).unwrap();
            let bias_d = up(dev, &bias);
            // `skew` leading elements: the view starts 2 bytes past a 16-byte boundary.
            let padded: Vec<f32> = std::iter::repeat_n(0.0, skew).chain(inp.clone()).collect();
            let inp_t = DeviceMatrix::upload(dev, &padded, dtype).unwrap();
            let mut out = poisoned(dev, m * n);
            dev.linear_forward_from(
                &mut out,
                &inp_t.view(skew..),
                &wd,
                Some(&bias_d),
                m,
                k,
                n,
                act,
            )
            .unwrap();
            let got = down(dev, &out);
            let what = format!("linear_forward_from {dtype} [{m},{k}]x[{n},{k}] +{skew} {act:?}");
            check(&what, &got, &want, 1e-5);
            let mut f32_in = poisoned(dev, m * n);
            dev.linear_forward_with(
                &mut f32_in,
                &up(dev, &inp),
                &wd,
                Some(&bias_d),
                m,
                k,
                n,
                act,
                true,
            )
            .unwrap();
            assert_eq!(
                got,
                down(dev, &f32_in),
                "{what}: not the f32-input kernel's bits"
            );
            // Split-K (no activation): 3 f32 partials, the bias in the first; their
            // in-order sum is the product.
            if act.is_none() {
                let splits = 3;
                let mut parts = poisoned(dev, splits * m * n);
                let view = inp_t.view(skew..);
                dev.linear_forward_split(&mut parts, &view, &wd, Some(&bias_d), m, k, n, splits)
                    .unwrap();
                let p = down(dev, &parts);
                let sum: Vec<f32> = (0..m * n)
                    .map(|e| (1..splits).fold(p[e], |acc, z| acc + p[z * m * n + e]))
                    .collect();
                check(&format!("{what} split-K x{splits}"), &sum, &want, 1e-5);
            }
        }
    }
}

pub fn embeddings_forward_matches_reference(dev: &Ctx) {
    let mut r = Rng::new(2);
    let (v, p, t) = (1000, 64, 2);
    for dtype in DTYPES {
        for &(rows, s, e) in &[(1, 1, 24), (3, 19, 128), (2, 64, 33)] {
            let m = rows * s;
            let word: Vec<f32> = r.vec(v * e, 1.0).iter().map(|&x| dtype.round(x)).collect();
            let pos: Vec<f32> = r.vec(p * e, 1.0).iter().map(|&x| dtype.round(x)).collect();
            let typ: Vec<f32> = r.vec(t * e, 1.0).iter().map(|&x| dtype.round(x)).collect();
            let (lw, lb) = (r.vec(e, 1.0), r.vec(e, 1.0));
            let ids: Vec<u32> = (0..m).map(|_| r.below(v as u64) as u32).collect();
            let types: Vec<u32> = (0..m).map(|_| r.below(t as u64) as u32).collect();
            let mut want = vec![0f32; m * e];
            cpu::embeddings_forward(
                &mut want, &ids, &types, &word, &pos, &typ, &lw, &lb, s, e, 1e-12,
            );
            let mut out = poisoned(dev, m * e);
            let [wd, pd, td] =
                [&word, &pos, &typ].map(|x| DeviceMatrix::upload(dev, x, dtype).unwrap());
            let ids_d = up_i32(dev, &ids.iter().map(|&x| x as i32).collect::<Vec<_>>());
            let types_d = up_i32(dev, &types.iter().map(|&x| x as i32).collect::<Vec<_>>());
            dev.embeddings_forward(
                &mut out,
                &ids_d,
                &types_d,
                &wd,
                &pd,
                &td,
                &up(dev, &lw),
                &up(dev, &lb),
                m,
                s,
                e,
                1e-12,
            )
            .unwrap();
            check(
                &format!("embeddings {dtype} M={m} E={e}"),
                &down(dev, &out),
                &want,
                1e-5,
            );
        }
    }
}

/// The fused embeddings + projection (kernels/embeddings_project.cu) against the three
/// launches it replaces: the f32 output bit for bit, and the T copy (also against the f32
/// output rounded on the host). E = 128; M = 70 (a ragged second block row), H = 200 (a
/// ragged fourth block column), S = 35 (two sequences); a non-128 E is refused by name.
pub fn embeddings_project_matches_unfused(dev: &Ctx) {
    let mut r = Rng::new(12);
    let (v, p, t, e, h) = (1000, 64, 2, 128, 200);
    for dtype in [DType::BF16, DType::F16] {
        if !dev.embeddings_project_fits(dtype, e) || !dev.linear_keeps_t(dtype) {
            println!("  embeddings_project_{dtype}: not on this device, skipped");
            continue;
        }
        let (rows, s) = (2, 35);
        let m = rows * s;
        let table = |r: &mut Rng, n: usize| DeviceMatrix::upload(dev, &r.vec(n * e, 1.0), dtype);
        let [word, pos, typ] = [v, p, t].map(|n| table(&mut r, n).unwrap());
        let norm = DeviceNorm {
            weight: up(dev, &r.vec(e, 1.0)),
            bias: up(dev, &r.vec(e, 1.0)),
        };
        let proj = DeviceLinear {
            weight: DeviceMatrix::upload(dev, &r.vec(h * e, 0.15), dtype).unwrap(),
            bias: up(dev, &r.vec(h, 1.0)),
            out_features: h,
            in_features: e,
        };
        let ids: Vec<i32> = (0..m).map(|_| r.below(v as u64) as i32).collect();
        let types: Vec<i32> = (0..m).map(|_| r.below(t as u64) as i32).collect();
        let (ids, types) = (up_i32(dev, &ids), up_i32(dev, &types));
        let tables = [&word, &pos, &typ];
        // Unfused: embeddings (f32), the product (rounding x to T as it stages it), round_to.
        let mut x = poisoned(dev, m * e);
        dev.embeddings_forward(
            &mut x,
            &ids,
            &types,
            &word,
            &pos,
            &typ,
            &norm.weight,
            &norm.bias,
            m,
            s,
            e,
            1e-12,
        )
        .unwrap();
        let mut want = poisoned(dev, m * h);
        let bias = Some(&proj.bias);
        dev.linear_forward(&mut want, &x, &proj.weight, bias, m, e, h, None)
            .unwrap();
        let mut want_t = DeviceMatrix::zeros(dev, m * h, dtype).unwrap();
        dev.round_to(&mut want_t, &want, m * h).unwrap();
        // Fused.
        let mut got = poisoned(dev, m * h);
        let mut got_t = DeviceMatrix::zeros(dev, m * h, dtype).unwrap();
        dev.embeddings_project(
            &mut got,
            &mut got_t,
            &ids,
            &types,
            tables,
            &norm,
            &proj,
            (m, s),
            1e-12,
        )
        .unwrap();
        let what = format!("embeddings_project_{dtype} M={m} H={h}");
        let (got, want) = (down(dev, &got), down(dev, &want));
        check(&what, &got, &want, 1e-6);
        assert!(
            got.iter()
                .zip(&want)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "{what}: not bit-identical to the unfused launches"
        );
        let (got_t, want_t) = (down_t(dev, &got_t), down_t(dev, &want_t));
        let rounded: Vec<f32> = got.iter().map(|&x| dtype.round(x)).collect();
        assert!(got_t == want_t && got_t == rounded, "{what}: T copy");
        // E = 64: refused, naming the kernel and the size.
        let small = DeviceLinear {
            weight: DeviceMatrix::upload(dev, &vec![0.0; h * 64], dtype).unwrap(),
            bias: up(dev, &vec![0.0; h]),
            out_features: h,
            in_features: 64,
        };
        let mut out = poisoned(dev, m * h);
        let mut out_t = DeviceMatrix::zeros(dev, m * h, dtype).unwrap();
        let err = dev
            .embeddings_project(
                &mut out,
                &mut out_t,
                &ids,
                &types,
                tables,
                &norm,
                &small,
                (m, s),
                1e-12,
            )
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("embeddings_project") && err.contains("E = 64"),
            "{err}"
        );
    }
}

pub fn layernorm_forward_matches_reference(dev: &Ctx) {
    let mut r = Rng::new(3);
    for &(m, c) in &[(1, 1), (7, 24), (33, 768), (5, 1000), (3, 4096)] {
        // A large common offset: statistics must not lose the spread to the mean.
        let inp: Vec<f32> = r.vec(m * c, 1.0).iter().map(|x| x + 100.0).collect();
        let res = r.vec(m * c, 1.0);
        let (w, b) = (r.vec(c, 1.0), r.vec(c, 1.0));
        let mut want = vec![0f32; m * c];
        cpu::residual_layernorm_forward(&mut want, &inp, &res, &w, &b, c, 1e-12);
        let mut out = poisoned(dev, m * c);
        dev.residual_layernorm_forward(
            &mut out,
            &up(dev, &inp),
            Some(&up(dev, &res)),
            &up(dev, &w),
            &up(dev, &b),
            m,
            c,
            1e-12,
        )
        .unwrap();
        check(
            &format!("residual_layernorm M={m} C={c}"),
            &down(dev, &out),
            &want,
            1e-5,
        );
        cpu::layernorm_forward(&mut want, &inp, &w, &b, c, 1e-5);
        let mut out = poisoned(dev, m * c);
        dev.residual_layernorm_forward(
            &mut out,
            &up(dev, &inp),
            None,
            &up(dev, &w),
            &up(dev, &b),
            m,
            c,
            1e-5,
        )
        .unwrap();
        check(
            &format!("layernorm M={m} C={c}"),
            &down(dev, &out),
            &want,
            1e-5,
        );
        // With a T copy, on 3 split-K partials added in order (C <= 1024: the warp-per-row
        // kernel; 4096: the block-per-row one).
        if !dev.linear_keeps_t(DType::BF16) {
            continue;
        }
        for dtype in [DType::BF16, DType::F16] {
            let parts = 3;
            let p = r.vec(parts * m * c, 1.0);
            let summed: Vec<f32> = (0..m * c)
                .map(|e| p[e] + p[m * c + e] + p[2 * m * c + e])
                .collect();
            cpu::residual_layernorm_forward(&mut want, &summed, &res, &w, &b, c, 1e-12);
            let mut out = poisoned(dev, m * c);
            let mut out_t = DeviceMatrix::zeros(dev, m * c, dtype).unwrap();
            dev.residual_layernorm_forward_to(
                &mut out,
                &mut out_t,
                &up(dev, &p),
                parts,
                &up(dev, &res),
                &up(dev, &w),
                &up(dev, &b),
                m,
                c,
                1e-12,
            )
            .unwrap();
            let got = down(dev, &out);
            let what = format!("residual_layernorm_to {dtype} M={m} C={c} parts={parts}");
            check(&what, &got, &want, 1e-5);
            let rounded: Vec<f32> = got.iter().map(|&x| dtype.round(x)).collect();
            assert_eq!(down_t(dev, &out_t), rounded, "{what}: T copy");
        }
    }
}

pub fn attention_forward_matches_reference(dev: &Ctx) {
    let mut r = Rng::new(4);
    for &(b, s, a, d) in &[
        (1, 1, 1, 1),
        (2, 37, 3, 16),
        (3, 128, 12, 64),
        (1, 512, 2, 128),
        (2, 33, 1, 100),
    ] {
        let n = b * s * a * d;
        // Scores of a few units, like the fixtures' scaled-up query/key weights.
        let (q, k, v) = (r.vec(n, 3.0), r.vec(n, 3.0), r.vec(n, 1.0));
        let mask = attention_mask(b, s);
        let mut want = vec![0f32; n];
        cpu::attention_forward(&mut want, &q, &k, &v, &mask, b, s, a, d);
        let got = attention_on_device(dev, &q, &k, &v, &mask, (b, s, a, d), DType::F32, false);
        check(
            &format!("attention f32 B={b} S={s} A={a} D={d}"),
            &got,
            &want,
            1e-5,
        );
    }
}

/// The tensor-core kernel (D = 64, bf16/f16) against the reference run on q, k, v rounded to
/// the operand type: the one difference left is P rounded to that type, within 1e-2 (bf16)
/// and 2e-3 (f16) in the emulator (dev/emu: worst 1.1e-3 and 1.4e-4). D = 100 takes the
/// portable kernel, which ignores the operand type (exact f32, 1e-5).
pub fn attention_forward_mma_matches_reference(dev: &Ctx) {
    let mut r = Rng::new(5);
    for dtype in [DType::BF16, DType::F16] {
        let tol = if dtype == DType::BF16 { 1e-2 } else { 2e-3 };
        for &(b, s, a, d) in &[
            (1, 1, 1, 64),
            (5, 150, 2, 64),
            (3, 37, 12, 64),
            (32, 128, 12, 64),
            (2, 512, 4, 64),
            (2, 33, 1, 100),
        ] {
            let n = b * s * a * d;
            let (q, k, v) = (r.vec(n, 2.0), r.vec(n, 2.0), r.vec(n, 1.0));
            let mask = attention_mask(b, s);
            // The tensor-core kernel rounds q, k, v; the portable one (D != 64, or a device
            // below sm_80) is exact f32 whatever the operand type.
            let mma = d == 64 && dev.kernels.has("attention_forward_mma_bf16");
            let round = |x: &[f32]| match mma {
                true => x.iter().map(|&e| dtype.round(e)).collect::<Vec<_>>(),
                false => x.to_vec(),
            };
            let (qr, kr, vr) = (round(&q), round(&k), round(&v));
            let mut want = vec![0f32; n];
            cpu::attention_forward(&mut want, &qr, &kr, &vr, &mask, b, s, a, d);
            let got = attention_on_device(dev, &q, &k, &v, &mask, (b, s, a, d), dtype, true);
            let what = format!("attention {dtype} mma={mma} B={b} S={s} A={a} D={d}");
            check(&what, &got, &want, if mma { tol } else { 1e-5 });
            if mma {
                // Same input twice: bit-identical (a difference would be a race).
                let again = attention_on_device(dev, &q, &k, &v, &mask, (b, s, a, d), dtype, true);
                assert_eq!(got, again, "{what}: two runs differ");
                // q, k, v stored as T (as the fused QKV product stores them for this
                // kernel): the kernel rounds f32 ones the same way, so the same bits.
                let h = a * d;
                let qkv = DeviceMatrix::upload(dev, &fuse_qkv(&q, &k, &v, h), dtype).unwrap();
                let mut out = poisoned(dev, n);
                dev.attention_forward(
                    &mut out,
                    &qkv.view(..),
                    &qkv.view(h..),
                    &qkv.view(2 * h..),
                    &up(dev, &mask),
                    b,
                    s,
                    a,
                    d,
                    3 * h,
                    dtype,
                )
                .unwrap();
                assert_eq!(down(dev, &out), got, "{what}: q, k, v stored as {dtype}");
            }
        }
    }
}

pub fn gather_rows_copies_rows(dev: &Ctx) {
    let (m, c) = (10, 37);
    let inp: Vec<f32> = (0..m * c).map(|i| i as f32).collect();
    let rows = [9, 0, 4, 4];
    let mut out = poisoned(dev, rows.len() * c);
    dev.gather_rows(&mut out, &up(dev, &inp), &up_i32(dev, &rows), &rows, c)
        .unwrap();
    let want: Vec<f32> = rows
        .iter()
        .flat_map(|&r| inp[r as usize * c..(r as usize + 1) * c].to_vec())
        .collect();
    assert_eq!(down(dev, &out), want);
}

pub fn launchers_reject_bad_sizes(dev: &Ctx) {
    let small = poisoned(dev, 10);
    let mut out = poisoned(dev, 10);
    let w = DeviceMatrix::upload(dev, &[0.0; 12], DType::F32).unwrap();
    let e = dev
        .linear_forward(&mut out, &small, &w, None, 4, 3, 4, None)
        .unwrap_err();
    assert!(e.to_string().contains("linear_forward_f32"), "{e}");
    let e = dev
        .gather_rows(&mut out, &small, &up_i32(dev, &[7]), &[7], 2)
        .unwrap_err();
    assert!(e.to_string().contains("outside"), "{e}");
    let mask = up(dev, &[0.0; 2]);
    let e = dev
        .attention_forward(
            &mut out,
            &DeviceView::F32(small.slice(..)),
            &DeviceView::F32(small.slice(..)),
            &DeviceView::F32(small.slice(..)),
            &mask,
            1,
            2,
            1,
            4,
            3,
            DType::BF16,
        )
        .unwrap_err();
    assert!(e.to_string().contains("ld = 3"), "{e}");
    // An f32 activation for the T-input product; a T activation shorter than [M, K].
    let e = dev
        .linear_forward_from(
            &mut out,
            &DeviceView::F32(small.slice(..)),
            &w,
            None,
            4,
            3,
            4,
            None,
        )
        .unwrap_err();
    assert!(e.to_string().contains("_from_"), "{e}");
    if dev.linear_keeps_t(DType::BF16) {
        let wb = DeviceMatrix::upload(dev, &[0.0; 12], DType::BF16).unwrap();
        let short = DeviceMatrix::upload(dev, &[0.0; 10], DType::BF16).unwrap();
        let e = dev
            .linear_forward_from(&mut out, &short.view(..), &wb, None, 4, 3, 4, None)
            .unwrap_err();
        assert!(e.to_string().contains("smaller"), "{e}");
    }
}

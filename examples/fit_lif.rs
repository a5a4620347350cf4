//! Offline fit of the fast LIF+AHP motor-neuron model to MyoGen's NERLab f–I fixtures.
//! Run: `cargo run --release --example fit_lif` (prints the constants hard-coded in src/neuron/lif.rs).
use argmin::core::{CostFunction, Executor};
use argmin::solver::neldermead::NelderMead;

struct Point {
    unit: usize,
    mult: f64,
    rate: f64,
}

fn load() -> (Vec<Point>, Vec<(usize, f64)>, Vec<f64>) {
    let csv = std::fs::read_to_string("tests/fixtures/fi_summary.csv").unwrap();
    let mut pts = Vec::new();
    for line in csv.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        if f[1] != "0.1" {
            continue;
        }
        let rate: f64 = f[9].parse().unwrap_or(f64::NAN);
        if rate.is_finite() {
            pts.push(Point {
                unit: f[0].parse().unwrap(),
                mult: f[2].parse().unwrap(),
                rate,
            });
        }
    }
    let rts: Vec<(usize, f64)> = std::fs::read_to_string("tests/fixtures/lif_fi_units_rt.csv")
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0].parse().unwrap(), f[1].parse().unwrap())
        })
        .collect();
    let rh = vec![
        4.91796875,
        5.00732421875,
        5.1787109375,
        6.0498046875,
        8.78515625,
        18.392578125,
    ];
    (pts, rts, rh)
}

/// Dimensionless LIF+AHP: u <- u + a(j - w - u); spike if u > 1; u <- ur; w <- k w + s dw.
/// Protocol of the fixture: 1100 ms at dt 0.1 ms, step from 100 ms, rate = 1000/mean ISI in [600,1100).
fn rate(j: f64, tau_m_ms: f64, tau_w_ms: f64, dw: f64, ur: f64) -> f64 {
    let dt = 0.1;
    let a = dt / tau_m_ms;
    let k = (-dt / tau_w_ms).exp();
    let (mut u, mut w) = (0.0f64, 0.0f64);
    let mut times = Vec::new();
    for step in 0..11000 {
        let jj = if step >= 1000 { j } else { 0.0 };
        let u1 = u + a * (jj - w - u);
        let s = if u1 > 1.0 { 1.0 } else { 0.0 };
        u = u1 - s * (u1 - ur);
        w = k * w + s * dw;
        let t = (step + 1) as f64 * dt;
        if s > 0.0 && t >= 600.0 {
            times.push(t);
        }
    }
    if times.len() < 2 {
        return 0.0;
    }
    1000.0 * (times.len() - 1) as f64 / (times[times.len() - 1] - times[0])
}

fn in_band(r: f64) -> bool {
    (8.0..=35.0).contains(&r)
}

// per-unit fit: params = [ln tau_m, ln tau_w, ln dw, ur]
struct PerUnit<'a> {
    pts: Vec<&'a Point>,
}
impl CostFunction for PerUnit<'_> {
    type Param = Vec<f64>;
    type Output = f64;
    fn cost(&self, p: &Vec<f64>) -> Result<f64, argmin::core::Error> {
        let mut c = 0.0;
        for q in &self.pts {
            let r = rate(q.mult, p[0].exp(), p[1].exp(), p[2].exp(), p[3]);
            let e = (r.max(1e-3) / q.rate).ln();
            let wgt = if in_band(q.rate) { 1.0 } else { 0.2 };
            c += wgt * e * e;
        }
        Ok(c)
    }
}

// shared shape: params = [ln rho (tau_m/tau_w), ln dw, ur, ln tau_w(unit) x 6]
struct Shared<'a> {
    pts: &'a [Point],
    units: Vec<usize>,
}
impl CostFunction for Shared<'_> {
    type Param = Vec<f64>;
    type Output = f64;
    fn cost(&self, p: &Vec<f64>) -> Result<f64, argmin::core::Error> {
        let mut c = 0.0;
        for q in self.pts {
            let ui = self.units.iter().position(|&u| u == q.unit).unwrap();
            let tw = p[3 + ui].exp();
            let r = rate(q.mult, p[0].exp() * tw, tw, p[1].exp(), p[2]);
            let e = (r.max(1e-3) / q.rate).ln();
            let wgt = if in_band(q.rate) { 1.0 } else { 0.2 };
            c += wgt * e * e;
        }
        Ok(c)
    }
}

fn nm(x0: Vec<f64>, step: f64) -> Vec<Vec<f64>> {
    let mut s = vec![x0.clone()];
    for i in 0..x0.len() {
        let mut x = x0.clone();
        x[i] += step;
        s.push(x);
    }
    s
}

// smooth: params = [ln rho, ln dw, ur, d0, d1, d2] with 1/tau_w = d0 + d1 rt + d2 rt^2 (1/ms)
struct Smooth<'a> {
    pts: &'a [Point],
    rts: Vec<(usize, f64)>,
}
impl Smooth<'_> {
    fn tau_w(p: &[f64], rt: f64) -> f64 {
        1.0 / (p[3] + p[4] * rt + p[5] * rt * rt).max(1e-4)
    }
}
impl CostFunction for Smooth<'_> {
    type Param = Vec<f64>;
    type Output = f64;
    fn cost(&self, p: &Vec<f64>) -> Result<f64, argmin::core::Error> {
        let mut c = 0.0;
        for q in self.pts {
            let rt = self.rts.iter().find(|r| r.0 == q.unit).unwrap().1;
            let tw = Smooth::tau_w(p, rt);
            let r = rate(q.mult, p[0].exp() * tw, tw, p[1].exp(), p[2]);
            let e = (r.max(1e-3) / q.rate).ln();
            let wgt = if in_band(q.rate) { 1.0 } else { 0.2 };
            c += wgt * e * e;
        }
        Ok(c)
    }
}

/// Least squares (relative) fit y = c0 + c1 x + c2 x^2.
fn quad_rel(x: &[f64], y: &[f64]) -> [f64; 3] {
    let mut a = [[0.0f64; 4]; 3];
    for (&xi, &yi) in x.iter().zip(y) {
        let row = [1.0 / yi, xi / yi, xi * xi / yi];
        for i in 0..3 {
            for j in 0..3 {
                a[i][j] += row[i] * row[j];
            }
            a[i][3] += row[i];
        }
    }
    // Gauss–Jordan elimination on the augmented 3×4 normal equations
    for i in 0..3 {
        let p = a[i][i];
        a[i].iter_mut().for_each(|v| *v /= p);
        let pivot = a[i];
        for (k, row) in a.iter_mut().enumerate() {
            if k != i {
                let f = row[i];
                row.iter_mut().zip(pivot).for_each(|(v, pv)| *v -= f * pv);
            }
        }
    }
    [a[0][3], a[1][3], a[2][3]]
}

fn smooth_fit(pts: &[Point], rts: &[(usize, f64)], rh: &[f64]) {
    let x: Vec<f64> = rts.iter().map(|r| r.1).collect();
    let c = quad_rel(&x, rh);
    println!(
        "rheobase_nA = {:.9} + {:.9} rt + {:.9} rt^2",
        c[0], c[1], c[2]
    );
    for (i, &xi) in x.iter().enumerate() {
        let m = c[0] + c[1] * xi + c[2] * xi * xi;
        println!(
            "  unit {} rt {xi:.5}: fixture {:.4} nA fit {m:.4} nA ({:+.2}%)",
            rts[i].0,
            rh[i],
            100.0 * (m / rh[i] - 1.0)
        );
    }
    let mut best = vec![
        (0.89652f64).ln(),
        (0.67236f64).ln(),
        -0.83269,
        0.0234,
        0.055,
        0.017,
    ];
    for round in 0..5 {
        let res = Executor::new(
            Smooth {
                pts,
                rts: rts.to_vec(),
            },
            NelderMead::new(nm(best.clone(), 0.05))
                .with_sd_tolerance(1e-10)
                .unwrap(),
        )
        .configure(|s| s.max_iters(4000))
        .run()
        .unwrap();
        best = res.state.best_param.clone().unwrap();
        println!("round {round} cost {:.6}", res.state.best_cost);
    }
    let p = &best;
    println!(
        "rho {:.9} dw {:.9} ur {:.9} d0 {:.9} d1 {:.9} d2 {:.9}",
        p[0].exp(),
        p[1].exp(),
        p[2],
        p[3],
        p[4],
        p[5]
    );
    let mut worst: f64 = 0.0;
    for &(u, rt) in rts {
        let tw = Smooth::tau_w(p, rt);
        println!("unit {u} rt {rt:.5} tau_w {tw:.4} ms");
        for q in pts.iter().filter(|q| q.unit == u) {
            let r = rate(q.mult, p[0].exp() * tw, tw, p[1].exp(), p[2]);
            let e = 100.0 * (r / q.rate - 1.0);
            if in_band(q.rate) {
                worst = worst.max(e.abs());
            }
            println!(
                "   mult {:.2} fixture {:7.2} model {:7.2} err {:+.1}%{}",
                q.mult,
                q.rate,
                r,
                e,
                if in_band(q.rate) { " *" } else { "" }
            );
        }
    }
    println!("worst in-band error {worst:.2}%");
}

fn main() {
    let (pts, rts, rh) = load();
    let units: Vec<usize> = rts.iter().map(|r| r.0).collect();
    let mode = std::env::args().nth(1).unwrap_or_else(|| "shared".into());
    if mode == "smooth" {
        smooth_fit(&pts, &rts, &rh);
        return;
    }
    if mode == "perunit" {
        for &u in &units {
            let cf = PerUnit {
                pts: pts.iter().filter(|p| p.unit == u).collect(),
            };
            let x0 = vec![(20.0f64).ln(), (30.0f64).ln(), (0.5f64).ln(), 0.0];
            let res = Executor::new(
                cf,
                NelderMead::new(nm(x0, 0.3))
                    .with_sd_tolerance(1e-8)
                    .unwrap(),
            )
            .configure(|s| s.max_iters(3000))
            .run()
            .unwrap();
            let p = res.state.best_param.clone().unwrap();
            println!(
                "unit {u}: tau_m {:.3} ms tau_w {:.3} ms dw {:.4} ur {:.4} cost {:.5}",
                p[0].exp(),
                p[1].exp(),
                p[2].exp(),
                p[3],
                res.state.best_cost
            );
            for q in pts.iter().filter(|p| p.unit == u) {
                let r = rate(q.mult, p[0].exp(), p[1].exp(), p[2].exp(), p[3]);
                println!(
                    "   mult {:.2} fixture {:7.2} model {:7.2} err {:+.1}%",
                    q.mult,
                    q.rate,
                    r,
                    100.0 * (r / q.rate - 1.0)
                );
            }
        }
        return;
    }
    let cf = Shared {
        pts: &pts,
        units: units.clone(),
    };
    let mut x0 = vec![(0.7f64).ln(), (0.5f64).ln(), 0.0];
    for &(_, rt) in &rts {
        x0.push((40.0 / (1.0 + 3.0 * rt)).ln());
    }
    let mut best = x0;
    for round in 0..4 {
        let res = Executor::new(
            Shared {
                pts: &pts,
                units: units.clone(),
            },
            NelderMead::new(nm(best.clone(), 0.2))
                .with_sd_tolerance(1e-9)
                .unwrap(),
        )
        .configure(|s| s.max_iters(4000))
        .run()
        .unwrap();
        best = res.state.best_param.clone().unwrap();
        println!("round {round} cost {:.6}", res.state.best_cost);
    }
    let _ = cf;
    let p = &best;
    println!("rho {:.5} dw {:.5} ur {:.5}", p[0].exp(), p[1].exp(), p[2]);
    for (i, &(u, rt)) in rts.iter().enumerate() {
        let tw = p[3 + i].exp();
        println!(
            "unit {u} rt {rt:.5} tau_w {tw:.4} ms  1/tau_w {:.6}",
            1.0 / tw
        );
        for q in pts.iter().filter(|q| q.unit == u) {
            let r = rate(q.mult, p[0].exp() * tw, tw, p[1].exp(), p[2]);
            println!(
                "   mult {:.2} fixture {:7.2} model {:7.2} err {:+.1}%{}",
                q.mult,
                q.rate,
                r,
                100.0 * (r / q.rate - 1.0),
                if in_band(q.rate) { " *" } else { "" }
            );
        }
    }
}

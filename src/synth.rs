//! Procedural synthetic hand radiographs for tests and fixtures.
//!
//! A fresh clone has no real radiographs, so tests draw a plausible left-hand PA
//! radiograph in code: a dark background, a medium-grey soft-tissue silhouette
//! (forearm, palm, four fingers and an abducted thumb on the right of the image)
//! and bright bones inside it (radius, ulna, up to eight carpals, five metacarpals
//! and the phalanges). Every long bone has a shaft with a bright cortex and a
//! darker medulla, and a separate epiphysis whose size grows with
//! [`HandParams::maturity`] and whose growth plate (the dark gap) narrows and
//! finally fuses.
//!
//! The geometry is a list of signed-distance primitives (ellipses, rounded boxes
//! and round cones) laid out in millimetres in a "hand frame"; a similarity
//! transform maps it into the image (size, maturity-dependent hand size, mirroring,
//! rotation). Pixels are shaded from the distances, which also gives a one- to
//! two-pixel anti-aliased edge. Primitives are binned into 16 × 16 pixel tiles so a
//! pixel only evaluates the shapes near it, and rows are rendered on a few
//! threads. The output is a pure function of [`HandParams`]: noise comes from a
//! SplitMix64 hash of the seed and the pixel, never from a global generator.

use image::{GrayImage, ImageBuffer, Luma};

/// Parameters of a synthetic left-hand PA radiograph.
#[derive(Debug, Clone)]
pub struct HandParams {
    /// Image width in pixels.
    pub width: u32,
    /// Image height in pixels.
    pub height: u32,
    /// 0.0 (infant: small epiphyses, wide growth plates, two carpals) ..
    /// 1.0 (adult: all growth plates fused). Values outside are clamped.
    pub maturity: f32,
    /// Rotation of the whole hand about the image centre, in degrees,
    /// counter-clockwise as the image is displayed.
    pub rotation_deg: f32,
    /// `true` draws a right hand (the mirror image of the left hand).
    pub mirrored: bool,
    /// Seeds the noise and a small jitter of the bone shapes.
    pub seed: u64,
}

impl Default for HandParams {
    fn default() -> Self {
        HandParams {
            width: 1000,
            height: 1300,
            maturity: 0.5,
            rotation_deg: 0.0,
            mirrored: false,
            seed: 1,
        }
    }
}

/// Renders the radiograph as a 16-bit grey image: background about 3 000, soft
/// tissue about 15 000–24 000, bone about 35 000–55 000 (overlaps are softly
/// compressed below 65 535).
pub fn hand_radiograph_16(p: &HandParams) -> ImageBuffer<Luma<u16>, Vec<u16>> {
    let (w, h) = (p.width, p.height);
    let scene = Scene::build(p);
    let buf = scene.render(w, h);
    ImageBuffer::from_raw(w, h, buf).unwrap_or_else(|| ImageBuffer::new(w, h))
}

/// The same picture at 8 bits: every pixel is exactly `(v16 >> 8) as u8` of
/// [`hand_radiograph_16`] for the same parameters (it renders at 16 bits and
/// shifts).
pub fn hand_radiograph_8(p: &HandParams) -> GrayImage {
    let img16 = hand_radiograph_16(p);
    let (w, h) = img16.dimensions();
    let data: Vec<u8> = img16.as_raw().iter().map(|&v| (v >> 8) as u8).collect();
    GrayImage::from_raw(w, h, data).unwrap_or_else(|| GrayImage::new(w, h))
}

/// A 16-bit image whose values are exactly `v8 * 257`, so an 8-bit and a 16-bit
/// file show the same picture at full precision.
pub fn widen_to_16(img: &GrayImage) -> ImageBuffer<Luma<u16>, Vec<u16>> {
    let (w, h) = img.dimensions();
    let data: Vec<u16> = img.as_raw().iter().map(|&v| u16::from(v) * 257).collect();
    ImageBuffer::from_raw(w, h, data).unwrap_or_else(|| ImageBuffer::new(w, h))
}

/// Approximate centres of the 13 TW3 RUS joints, in pixel coordinates (x, y) of
/// the image generated for the same parameters, in this order: radius, ulna, mc1,
/// mc3, mc5, pp1, pp3, pp5, mp3, mp5, dp1, dp3, dp5. Each is the centre of the
/// bone's epiphysis (the distal epiphysis for radius and ulna).
pub fn joint_centres(p: &HandParams) -> [(f32, f32); 13] {
    let scene = Scene::build(p);
    scene.joints.map(|j| {
        let q = scene.xf.project(j);
        (q.x, q.y)
    })
}

// ---------------------------------------------------------------------------
// Small 2-D vector.

#[derive(Debug, Clone, Copy, PartialEq)]
struct V2 {
    x: f32,
    y: f32,
}

const fn v2(x: f32, y: f32) -> V2 {
    V2 { x, y }
}

impl V2 {
    fn dot(self, o: V2) -> f32 {
        self.x * o.x + self.y * o.y
    }
    fn len(self) -> f32 {
        self.dot(self).sqrt()
    }
    /// Rotated by +90° (in y-down image axes, a quarter turn clockwise on screen).
    fn perp(self) -> V2 {
        v2(-self.y, self.x)
    }
    fn norm(self) -> V2 {
        let l = self.len();
        if l > 0.0 {
            self * (1.0 / l)
        } else {
            v2(1.0, 0.0)
        }
    }
    /// Rotated by `deg` degrees in the mathematical sense of the axes (y down:
    /// clockwise on screen).
    fn rot(self, deg: f32) -> V2 {
        let (s, c) = deg.to_radians().sin_cos();
        v2(self.x * c - self.y * s, self.x * s + self.y * c)
    }
    fn min(self, o: V2) -> V2 {
        v2(self.x.min(o.x), self.y.min(o.y))
    }
    fn max(self, o: V2) -> V2 {
        v2(self.x.max(o.x), self.y.max(o.y))
    }
}

impl std::ops::Add for V2 {
    type Output = V2;
    fn add(self, o: V2) -> V2 {
        v2(self.x + o.x, self.y + o.y)
    }
}

impl std::ops::Sub for V2 {
    type Output = V2;
    fn sub(self, o: V2) -> V2 {
        v2(self.x - o.x, self.y - o.y)
    }
}

impl std::ops::Mul<f32> for V2 {
    type Output = V2;
    fn mul(self, s: f32) -> V2 {
        v2(self.x * s, self.y * s)
    }
}

/// Unit vector pointing "up the hand" tilted by `deg` towards +x (the thumb side
/// of a left hand), in y-down axes.
fn dir(deg: f32) -> V2 {
    let (s, c) = deg.to_radians().sin_cos();
    v2(s, -c)
}

fn smoothstep(e0: f32, e1: f32, x: f32) -> f32 {
    let t = ((x - e0) / (e1 - e0)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

fn lerp(a: f32, b: f32, t: f32) -> f32 {
    a + (b - a) * t
}

/// Polynomial smooth minimum; `k <= 0` is the plain minimum.
fn smin(a: f32, b: f32, k: f32) -> f32 {
    if k <= 0.0 {
        return a.min(b);
    }
    let h = (k - (a - b).abs()).max(0.0) / k;
    a.min(b) - h * h * k * 0.25
}

// ---------------------------------------------------------------------------
// Deterministic randomness.

fn splitmix(z: u64) -> u64 {
    let mut z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// SplitMix64 generator for the shape jitter.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        splitmix(self.0)
    }
    /// Uniform in [-1, 1).
    fn sym(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

/// Uniform in [0, 1) from the top 24 bits.
fn unit(h: u64) -> f32 {
    (h >> 40) as f32 / (1u64 << 24) as f32
}

/// Smooth value noise in [0, 1) on a unit lattice.
fn value_noise(p: V2, seed: u64) -> f32 {
    let fx = p.x.floor();
    let fy = p.y.floor();
    let (tx, ty) = (p.x - fx, p.y - fy);
    let (ix, iy) = (fx as i64, fy as i64);
    let corner = |dx: i64, dy: i64| {
        let key = ((ix + dx) as u64).wrapping_mul(0x9E37_79B1)
            ^ ((iy + dy) as u64).wrapping_mul(0x85EB_CA77_C2B2_AE63);
        unit(splitmix(key ^ seed))
    };
    let sx = tx * tx * (3.0 - 2.0 * tx);
    let sy = ty * ty * (3.0 - 2.0 * ty);
    let a = lerp(corner(0, 0), corner(1, 0), sx);
    let b = lerp(corner(0, 1), corner(1, 1), sx);
    lerp(a, b, sy)
}

// ---------------------------------------------------------------------------
// Signed-distance primitives (hand frame, millimetres; negative inside).

#[derive(Debug, Clone, Copy)]
enum Prim {
    /// Semi-axis `a` along unit `ax`, semi-axis `b` along `ax.perp()`.
    Ellipse { c: V2, ax: V2, a: f32, b: f32 },
    /// Tapered capsule from `a` (radius `ra`) to `b` (radius `rb`).
    Cone { a: V2, b: V2, ra: f32, rb: f32 },
    /// Quadrilateral (either winding) grown by `r`.
    Quad { v: [V2; 4], r: f32 },
    /// A long-bone shaft from `a` along unit `axis` for `len`: half width
    /// `ws · (1 − 0.12 sin πt)` plus Gaussian flares: `fe` of width `le` at the
    /// start and `fo` of width `lo` at the end. The start is
    /// cut flat by the plane through `a` with inward normal `cap`, its corners
    /// rounded by `r`; the end is cut square.
    Shaft {
        a: V2,
        axis: V2,
        cap: V2,
        r: f32,
        len: f32,
        ws: f32,
        fe: f32,
        le: f32,
        fo: f32,
        lo: f32,
    },
}

impl Prim {
    fn sdf(&self, p: V2) -> f32 {
        match *self {
            Prim::Ellipse { c, ax, a, b } => {
                let d = p - c;
                sd_ellipse(d.dot(ax), d.dot(ax.perp()), a, b)
            }
            Prim::Cone { a, b, ra, rb } => sd_round_cone(p, a, b, ra, rb),
            Prim::Quad { v, r } => sd_polygon(&v, p) - r,
            Prim::Shaft {
                a,
                axis,
                cap,
                r,
                len,
                ws,
                fe,
                le,
                fo,
                lo,
            } => {
                let d = p - a;
                let u = d.dot(axis);
                let v = d.dot(axis.perp()).abs();
                let uc = u.clamp(0.0, len);
                let t = uc / len;
                let (sn, cs) = (std::f32::consts::PI * t).sin_cos();
                let (ue, uo) = (uc / le, (len - uc) / lo);
                let ee = (-ue * ue).exp();
                let eo = (-uo * uo).exp();
                let w = ws * (1.0 - 0.12 * sn) + fe * ee + fo * eo;
                let dw = -ws * 0.12 * std::f32::consts::PI / len * cs - 2.0 * fe * ue / le * ee
                    + 2.0 * fo * uo / lo * eo;
                let side = (v - w) / (1.0 + dw * dw).sqrt();
                let start = -d.dot(cap);
                // Rounded intersection of the sides with the start plane.
                let rounded =
                    side.max(start).min(-r) + v2((side + r).max(0.0), (start + r).max(0.0)).len();
                rounded.max(u - len)
            }
        }
    }

    /// Axis-aligned bounds of the shape (the region where the distance is < 0).
    fn bounds(&self) -> (V2, V2) {
        match *self {
            Prim::Ellipse { c, ax, a, b } => {
                let n = ax.perp();
                let e = v2(
                    ((a * ax.x).powi(2) + (b * n.x).powi(2)).sqrt(),
                    ((a * ax.y).powi(2) + (b * n.y).powi(2)).sqrt(),
                );
                (c - e, c + e)
            }
            Prim::Cone { a, b, ra, rb } => {
                let lo = (a - v2(ra, ra)).min(b - v2(rb, rb));
                let hi = (a + v2(ra, ra)).max(b + v2(rb, rb));
                (lo, hi)
            }
            Prim::Quad { v, r } => {
                let mut lo = v[0];
                let mut hi = v[0];
                for q in v {
                    lo = lo.min(q);
                    hi = hi.max(q);
                }
                (lo - v2(r, r), hi + v2(r, r))
            }
            Prim::Shaft {
                a,
                axis,
                len,
                ws,
                fe,
                fo,
                ..
            } => {
                let e = ws * 1.05 + fe + fo;
                let b = a + axis * len;
                let lo = a.min(b) - v2(e, e);
                let hi = a.max(b) + v2(e, e);
                (lo, hi)
            }
        }
    }
}

/// Signed distance to the ellipse x²/a² + y²/b² = 1: exact (Eberly's
/// bisection) near the shape, a cheap first-order estimate far outside.
fn sd_ellipse(x: f32, y: f32, a: f32, b: f32) -> f32 {
    let (px, py) = (x.abs(), y.abs());
    let k0 = ((px / a).powi(2) + (py / b).powi(2)).sqrt();
    if k0 > 1.6 {
        let k1 = ((px / (a * a)).powi(2) + (py / (b * b)).powi(2)).sqrt();
        return k0 * (k0 - 1.0) / k1;
    }
    // Major axis first.
    let (e0, e1, y0, y1) = if a >= b {
        (f64::from(a), f64::from(b), f64::from(px), f64::from(py))
    } else {
        (f64::from(b), f64::from(a), f64::from(py), f64::from(px))
    };
    let d = if y1 > 0.0 {
        if y0 > 0.0 {
            let (z0, z1) = (y0 / e0, y1 / e1);
            let g = z0 * z0 + z1 * z1 - 1.0;
            if g == 0.0 {
                0.0
            } else {
                let r0 = (e0 / e1) * (e0 / e1);
                let n0 = r0 * z0;
                let mut s0 = z1 - 1.0;
                let mut s1 = if g < 0.0 {
                    0.0
                } else {
                    (n0 * n0 + z1 * z1).sqrt() - 1.0
                };
                let mut s = 0.0;
                for _ in 0..40 {
                    s = 0.5 * (s0 + s1);
                    let (t0, t1) = (n0 / (s + r0), z1 / (s + 1.0));
                    let gs = t0 * t0 + t1 * t1 - 1.0;
                    if gs > 0.0 {
                        s0 = s;
                    } else if gs < 0.0 {
                        s1 = s;
                    } else {
                        break;
                    }
                }
                let x0 = r0 * y0 / (s + r0);
                let x1 = y1 / (s + 1.0);
                ((x0 - y0).powi(2) + (x1 - y1).powi(2)).sqrt()
            }
        } else {
            (y1 - e1).abs()
        }
    } else {
        let (numer, denom) = (e0 * y0, e0 * e0 - e1 * e1);
        if numer < denom {
            let xd = numer / denom;
            let x0 = e0 * xd;
            let x1 = e1 * (1.0 - xd * xd).max(0.0).sqrt();
            ((x0 - y0).powi(2) + x1 * x1).sqrt()
        } else {
            (y0 - e0).abs()
        }
    };
    if k0 > 1.0 {
        d as f32
    } else {
        -(d as f32)
    }
}

/// Signed distance to a simple polygon (after Inigo Quilez).
fn sd_polygon(v: &[V2], p: V2) -> f32 {
    let Some(&first) = v.first() else {
        return f32::INFINITY;
    };
    let mut d = (p - first).dot(p - first);
    let mut s = 1.0;
    let mut j = v.len() - 1;
    for i in 0..v.len() {
        let e = v[j] - v[i];
        let w = p - v[i];
        let t = (w.dot(e) / e.dot(e).max(1e-12)).clamp(0.0, 1.0);
        let b = w - e * t;
        d = d.min(b.dot(b));
        let c0 = p.y >= v[i].y;
        let c1 = p.y < v[j].y;
        let c2 = e.x * w.y > e.y * w.x;
        if (c0 && c1 && c2) || (!c0 && !c1 && !c2) {
            s = -s;
        }
        j = i;
    }
    s * d.sqrt()
}

/// Signed distance to a tapered capsule (after Inigo Quilez' "uneven capsule").
fn sd_round_cone(p: V2, a: V2, b: V2, ra: f32, rb: f32) -> f32 {
    let p = p - a;
    let pb = b - a;
    let h = pb.dot(pb);
    if h <= 1e-12 {
        return p.len() - ra.max(rb);
    }
    let qx = p.dot(pb.perp()).abs() / h;
    let qy = p.dot(pb) / h;
    let bb = ra - rb;
    let cx = (h - bb * bb).max(1e-12).sqrt();
    let k = cx * qy - bb * qx;
    let m = cx * qx + bb * qy;
    let n = qx * qx + qy * qy;
    if k < 0.0 {
        (h * n).sqrt() - ra
    } else if k > cx {
        (h * (n + 1.0 - 2.0 * qy)).max(0.0).sqrt() - rb
    } else {
        m - ra
    }
}

// ---------------------------------------------------------------------------
// Scene: soft tissue and bones in the hand frame.

/// One part of a bone; `k` is the smooth-union radius joining it to the parts
/// before it (0 = a hard union, which keeps a gap visible).
#[derive(Debug, Clone, Copy)]
struct Part {
    prim: Prim,
    k: f32,
}

/// One bone: its parts are united into one distance field and shaded as a unit.
#[derive(Debug, Clone)]
struct Group {
    parts: Vec<Part>,
    lo: V2,
    hi: V2,
    /// Overall density.
    gain: f32,
    /// Relative density of the medulla (cortex = 1).
    medulla: f32,
    /// Cortex thickness, mm.
    cortex: f32,
    /// Radius of the tube the bone is modelled as, mm (sets the projected
    /// thickness profile across it).
    tube: f32,
    /// Normalises the projected thickness.
    norm: f32,
}

impl Group {
    fn new(parts: Vec<Part>, gain: f32, medulla: f32, cortex: f32, tube: f32) -> Group {
        let mut lo = v2(f32::INFINITY, f32::INFINITY);
        let mut hi = v2(f32::NEG_INFINITY, f32::NEG_INFINITY);
        let mut kmax: f32 = 0.0;
        for part in &parts {
            let (l, h) = part.prim.bounds();
            lo = lo.min(l);
            hi = hi.max(h);
            kmax = kmax.max(part.k);
        }
        // A smooth union can bulge out by at most k/4.
        let m = kmax * 0.3;
        let cortex = cortex.min(tube);
        let peak = 2.0 * (tube * tube - (tube - cortex).powi(2)).max(1e-6).sqrt();
        Group {
            parts,
            lo: lo - v2(m, m),
            hi: hi + v2(m, m),
            gain,
            medulla,
            cortex,
            tube,
            norm: 1.0 / (peak.powf(0.75) * REF_PEAK.powf(0.25)),
        }
    }

    /// Projected density at `depth` mm inside the edge: a cortical tube around a
    /// less dense medulla, seen side-on (bright edges, darker middle).
    fn density(&self, depth: f32, trab: f32) -> f32 {
        let big_r = self.tube;
        let r = big_r - depth.min(big_r);
        let ri = big_r - self.cortex;
        let outer = 2.0 * (big_r * big_r - r * r).max(0.0).sqrt();
        // The inner chord, softened so the cortex does not end in a cusp.
        let c = 0.5 * self.cortex;
        let inner = 2.0 * ((ri * ri - r * r).max(0.0) + c * c).sqrt() - 2.0 * c;
        ((outer - inner) + self.medulla * inner * trab) * self.norm
    }

    fn sdf(&self, p: V2) -> f32 {
        let mut d = f32::INFINITY;
        for part in &self.parts {
            d = smin(d, part.prim.sdf(p), part.k);
        }
        d
    }
}

/// Similarity transform hand frame (mm) → pixels: `px = t + A q`.
#[derive(Debug, Clone, Copy)]
struct Xf {
    a: [f32; 4],
    t: V2,
    inv: [f32; 4],
    /// Pixels per hand millimetre.
    scale: f32,
}

impl Xf {
    fn project(&self, q: V2) -> V2 {
        let a = &self.a;
        v2(
            self.t.x + a[0] * q.x + a[1] * q.y,
            self.t.y + a[2] * q.x + a[3] * q.y,
        )
    }
    fn unproject(&self, p: V2) -> V2 {
        let d = p - self.t;
        let m = &self.inv;
        v2(m[0] * d.x + m[1] * d.y, m[2] * d.x + m[3] * d.y)
    }
}

/// Description of one long bone in the hand frame.
#[derive(Debug, Clone, Copy)]
struct LongBone {
    /// Articular end that carries the epiphysis.
    e_end: V2,
    /// The other articular end.
    o_end: V2,
    /// Half widths: metaphysis at the epiphysis end, shaft, other end.
    hw_e: f32,
    hw_s: f32,
    hw_o: f32,
    /// Mature epiphysis thickness (half, along the bone) / `hw_e`.
    epi_ratio: f32,
    /// Tilt of the epiphysis and metaphysis end, degrees.
    tilt: f32,
    /// Maturity window over which the growth plate fuses.
    fuse: (f32, f32),
    gain: f32,
    medulla: f32,
    cortex: f32,
}

/// Joint gap between neighbouring bones of a ray, mm.
const JOINT: f32 = 2.2;
/// Smooth-union radius of the soft-tissue silhouette, mm.
const K_TISSUE: f32 = 6.0;
/// Hand-frame size of the field of view at scale 1 (mm).
const FOV: (f32, f32) = (200.0, 260.0);

struct Scene {
    xf: Xf,
    tissue: Vec<Prim>,
    groups: Vec<Group>,
    /// TW3 RUS epiphysis centres, hand frame.
    joints: [V2; 13],
    /// Mid-points of the growth plates of the same bones, hand frame.
    #[cfg_attr(not(test), allow(dead_code))]
    plates: [V2; 13],
    #[cfg_attr(not(test), allow(dead_code))]
    carpals: usize,
    seed: u64,
}

/// What `LongBone::build` hands back besides the bone itself.
struct Built {
    group: Group,
    epi_centre: V2,
    plate: V2,
}

impl LongBone {
    fn build(&self, m: f32) -> Built {
        let axis = (self.o_end - self.e_end).norm();
        let n = axis.perp();
        let len = (self.o_end - self.e_end).len();
        let at = |s: f32| self.e_end + axis * s;
        let hw_e = self.hw_e;

        let growth = 1.0 - (1.0 - m / 0.8).max(0.0).powi(2);
        let fuse = smoothstep(self.fuse.0, self.fuse.1, m);
        let ea = hw_e * (0.35 + 0.65 * growth);
        let eb_m = self.epi_ratio * hw_e;
        let eb = (ea * lerp(0.8, self.epi_ratio, growth)).min(eb_m);
        let gap0 = (0.3 * hw_e).min(2.2) * (1.0 - 0.55 * m) + 0.3;
        let gap = gap0 * (1.0 - fuse) - 0.9 * eb * fuse;

        let s_e = eb_m;
        let s_m = s_e + eb + gap;
        let bh_o = 0.62 * self.hw_o;
        let s_head = (len - bh_o).max(s_m + 1.0);
        let end_ax = n.rot(self.tilt);

        let epi_centre = at(s_e);
        let parts = vec![
            Part {
                prim: Prim::Shaft {
                    a: at(s_m),
                    axis,
                    cap: axis.rot(self.tilt),
                    r: 0.25 * hw_e,
                    len: s_head - s_m,
                    ws: self.hw_s,
                    fe: (0.97 * hw_e - self.hw_s).max(0.0),
                    le: 0.75 * hw_e,
                    fo: 0.25 * self.hw_s,
                    lo: 0.5 * self.hw_o,
                },
                k: 0.0,
            },
            Part {
                prim: Prim::Ellipse {
                    c: at(s_head),
                    ax: n,
                    a: self.hw_o,
                    b: bh_o,
                },
                k: 0.4 * self.hw_o,
            },
            Part {
                prim: Prim::Ellipse {
                    c: epi_centre,
                    ax: end_ax,
                    a: ea,
                    b: eb,
                },
                k: 0.8 * eb * fuse,
            },
        ];
        Built {
            group: Group::new(
                parts,
                self.gain,
                self.medulla,
                self.cortex.min(0.3 * self.hw_s),
                1.1 * self.hw_s,
            ),
            epi_centre,
            plate: at(s_e + eb + 0.5 * gap.max(0.0)),
        }
    }
}

/// One finger ray, adult millimetres.
struct Ray {
    base: V2,
    mc_angle: f32,
    /// Angles of the proximal, middle and distal phalanx.
    f_angle: [f32; 3],
    /// Lengths: metacarpal, proximal, middle (0 = none), distal.
    len: [f32; 4],
    /// (shaft, proximal end, distal end) half widths per bone, same order.
    hw: [(f32, f32, f32); 4],
    /// Soft-tissue radius at the MCP joint, PIP joint and finger tip.
    tissue: (f32, f32, f32),
}

const RAYS: [Ray; 5] = [
    // Thumb (right side of a left hand in PA view).
    Ray {
        base: v2(26.0, 8.5),
        mc_angle: 40.0,
        f_angle: [32.0, 0.0, 27.0],
        len: [44.0, 31.0, 0.0, 24.0],
        hw: [
            (4.0, 6.2, 6.0),
            (3.6, 6.0, 5.0),
            (0.0, 0.0, 0.0),
            (2.6, 5.0, 3.4),
        ],
        tissue: (12.5, 11.0, 8.8),
    },
    // Index.
    Ray {
        base: v2(12.5, -1.0),
        mc_angle: 5.0,
        f_angle: [9.0, 10.0, 10.5],
        len: [67.0, 40.0, 24.0, 18.0],
        hw: [
            (3.4, 5.6, 5.4),
            (3.3, 5.6, 4.5),
            (2.7, 4.7, 3.8),
            (1.9, 3.9, 2.6),
        ],
        tissue: (10.8, 9.8, 8.0),
    },
    // Middle.
    Ray {
        base: v2(0.0, 0.0),
        mc_angle: 0.0,
        f_angle: [0.0, 0.0, 0.0],
        len: [64.0, 45.0, 28.0, 19.0],
        hw: [
            (3.4, 5.8, 5.4),
            (3.4, 5.8, 4.7),
            (2.9, 5.0, 4.0),
            (2.0, 4.1, 2.7),
        ],
        tissue: (11.0, 10.0, 8.2),
    },
    // Ring.
    Ray {
        base: v2(-11.0, 1.5),
        mc_angle: -6.0,
        f_angle: [-9.0, -10.0, -10.5],
        len: [57.0, 42.0, 26.0, 19.0],
        hw: [
            (3.0, 4.8, 4.9),
            (3.1, 5.3, 4.4),
            (2.7, 4.6, 3.7),
            (1.9, 3.9, 2.6),
        ],
        tissue: (10.4, 9.5, 7.8),
    },
    // Little.
    Ray {
        base: v2(-21.0, 4.0),
        mc_angle: -13.0,
        f_angle: [-19.0, -21.0, -22.0],
        len: [52.0, 33.0, 18.0, 17.0],
        hw: [
            (2.9, 4.8, 4.6),
            (2.7, 4.6, 3.8),
            (2.3, 3.9, 3.2),
            (1.7, 3.4, 2.3),
        ],
        tissue: (9.4, 8.6, 7.2),
    },
];

/// A carpal bone: centre, tilt of the `a` axis (degrees, from +x), adult
/// semi-axes, density, and the maturity at which it starts to ossify.
struct Carpal {
    c: V2,
    tilt: f32,
    a: f32,
    b: f32,
    gain: f32,
    onset: f32,
}

const fn carpal(c: V2, tilt: f32, a: f32, b: f32, gain: f32, onset: f32) -> Carpal {
    Carpal {
        c,
        tilt,
        a,
        b,
        gain,
        onset,
    }
}

/// In order of ossification: capitate, hamate, triquetrum, lunate, trapezium,
/// trapezoid, scaphoid, pisiform.
const CARPALS: [Carpal; 8] = [
    carpal(v2(1.0, 12.5), 0.0, 6.6, 9.8, 0.85, 0.0),
    carpal(v2(-13.0, 12.5), 12.0, 6.6, 9.0, 0.85, 0.0),
    carpal(v2(-14.0, 25.5), -25.0, 6.3, 5.2, 0.85, 0.12),
    carpal(v2(0.0, 29.0), 0.0, 6.6, 5.8, 0.85, 0.22),
    carpal(v2(21.0, 13.0), 35.0, 7.0, 6.0, 0.85, 0.30),
    carpal(v2(11.5, 7.5), 10.0, 5.2, 5.5, 0.85, 0.36),
    carpal(v2(13.0, 26.0), -55.0, 10.5, 5.5, 0.85, 0.40),
    carpal(v2(-16.5, 22.0), 0.0, 4.0, 4.5, 0.45, 0.62),
];

impl Scene {
    fn build(p: &HandParams) -> Scene {
        let m = if p.maturity.is_finite() {
            p.maturity.clamp(0.0, 1.0)
        } else {
            0.5
        };
        let rot = if p.rotation_deg.is_finite() {
            p.rotation_deg
        } else {
            0.0
        };
        let mut rng = Rng(p.seed ^ 0x5EED_0F4A_4D00_0001);

        // Global placement: the hand frame has the base of the third metacarpal at
        // the origin; `offset` puts it in the field of view (image centre = 0).
        let offset = v2(-8.0 + 1.5 * rng.sym(), 46.0 + 1.5 * rng.sym());
        let jitter_deg = 1.5 * rng.sym();
        let hand_size = 0.74 + 0.26 * m;
        let scale = (p.width as f32 / FOV.0).min(p.height as f32 / FOV.1);
        let xf = make_xf(p, scale * hand_size, rot, offset, jitter_deg);

        let chubby = 1.0 + 0.12 * (1.0 - m);
        let mut tissue = Vec::new();
        let mut groups = Vec::new();
        let mut joints = [v2(0.0, 0.0); 13];
        let mut plates = [v2(0.0, 0.0); 13];
        let long = |e_end, o_end, hw: (f32, f32, f32), ratio, fuse: (f32, f32), gain| LongBone {
            e_end,
            o_end,
            hw_e: hw.0,
            hw_s: hw.1,
            hw_o: hw.2,
            epi_ratio: ratio,
            tilt: 0.0,
            fuse,
            gain,
            medulla: 0.25,
            cortex: 1.1,
        };

        // Forearm.
        let radius = LongBone {
            tilt: -14.0,
            medulla: 0.3,
            cortex: 1.4,
            ..long(
                v2(8.0, 36.5),
                v2(5.0, 320.0),
                (12.5, 7.0, 7.5),
                0.3,
                (0.9, 0.995),
                0.95,
            )
        };
        let ulna = LongBone {
            tilt: 6.0,
            medulla: 0.3,
            cortex: 1.3,
            ..long(
                v2(-16.5, 39.0),
                v2(-14.0, 320.0),
                (6.6, 5.0, 5.5),
                0.45,
                (0.88, 0.99),
                0.95,
            )
        };
        for (i, bone) in [radius, ulna].iter().enumerate() {
            let b = bone.build(m);
            joints[i] = b.epi_centre;
            plates[i] = b.plate;
            groups.push(b.group);
        }
        tissue.push(Prim::Cone {
            a: v2(-3.5, 18.0),
            b: v2(-4.0, 330.0),
            ra: 29.0 * chubby,
            rb: 36.0 * chubby,
        });

        // Carpals.
        let mut carpals = 0;
        for c in &CARPALS {
            if m < c.onset {
                continue;
            }
            carpals += 1;
            let f = 0.35 + 0.65 * smoothstep(c.onset, c.onset + 0.5, m);
            let r = 0.5 * (c.a + c.b);
            let a = lerp(r, c.a, f) * f * (1.0 + 0.04 * rng.sym());
            let b = lerp(r, c.b, f) * f * (1.0 + 0.04 * rng.sym());
            let centre = c.c + v2(0.5 * rng.sym(), 0.5 * rng.sym());
            let prim = Prim::Ellipse {
                c: centre,
                ax: v2(1.0, 0.0).rot(c.tilt + 4.0 * rng.sym()),
                a,
                b,
            };
            let tube = a.min(b);
            groups.push(Group::new(
                vec![Part { prim, k: 0.0 }],
                c.gain,
                0.4,
                0.25 * tube,
                tube,
            ));
        }

        // Finger rays.
        for (ri, ray) in RAYS.iter().enumerate() {
            let thumb = ri == 0;
            let lf = |rng: &mut Rng| 1.0 + 0.03 * rng.sym();
            let wf = 1.0 + 0.04 * rng.sym();
            let da = 1.5 * rng.sym();
            let w = |h: (f32, f32, f32)| (h.0 * wf, h.1 * wf, h.2 * wf);

            // Metacarpal: epiphysis at the base for the thumb, at the head otherwise.
            let mc_dir = dir(ray.mc_angle + da);
            let base = ray.base;
            let head = base + mc_dir * (ray.len[0] * lf(&mut rng));
            let (s, pe, de) = w(ray.hw[0]);
            let mc = if thumb {
                long(base, head, (pe, s, de), 0.36, (0.84, 0.96), 1.0)
            } else {
                long(head, base, (de, s, pe), 0.62, (0.84, 0.96), 1.0)
            };
            let b = mc.build(m);
            record(&mut joints, &mut plates, ri, [2, 99, 3, 99, 4], &b);
            groups.push(b.group);

            // Phalanges, proximal → distal; each has its epiphysis at the base.
            let mut p0 = head;
            let mut tips = Vec::new();
            for (bi, &angle) in ray.f_angle.iter().enumerate() {
                let li = bi + 1;
                if ray.len[li] <= 0.0 {
                    continue;
                }
                let d = dir(angle + da);
                let start = p0 + d * JOINT;
                let end = start + d * (ray.len[li] * lf(&mut rng));
                let (s, pe, de) = w(ray.hw[li]);
                let (fuse, gain) = match li {
                    1 => ((0.82, 0.95), 0.96),
                    2 => ((0.8, 0.94), 0.92),
                    _ => ((0.78, 0.92), 0.88),
                };
                let bone = long(start, end, (pe, s, de), 0.33, fuse, gain);
                let b = bone.build(m);
                let slots = match li {
                    1 => [5, 99, 6, 99, 7],
                    2 => [99, 99, 8, 99, 9],
                    _ => [10, 99, 11, 99, 12],
                };
                record(&mut joints, &mut plates, ri, slots, &b);
                groups.push(b.group);
                tips.push((start, end, d));
                p0 = end;
            }

            // Soft tissue of the finger and its share of the palm.
            let (r_mcp, r_pip, r_tip) = (
                ray.tissue.0 * chubby,
                ray.tissue.1 * chubby,
                ray.tissue.2 * chubby,
            );
            if let (Some(first), Some(last)) = (tips.first(), tips.last()) {
                let mid = if tips.len() >= 3 { tips[1].0 } else { last.0 };
                let tip = last.1 + last.2 * 3.0;
                tissue.push(Prim::Cone {
                    a: first.0,
                    b: mid,
                    ra: r_mcp,
                    rb: r_pip,
                });
                tissue.push(Prim::Cone {
                    a: mid,
                    b: tip - last.2 * r_tip,
                    ra: r_pip,
                    rb: r_tip,
                });
            }
            if thumb {
                // Thenar eminence and the first web space.
                let index_at = |f: f32| RAYS[1].base + dir(RAYS[1].mc_angle) * (f * RAYS[1].len[0]);
                tissue.push(Prim::Cone {
                    a: base + v2(-6.0, 6.0),
                    b: head,
                    ra: 15.0 * chubby,
                    rb: r_mcp,
                });
                let thumb_at = |f: f32| base + mc_dir * (f * ray.len[0]);
                tissue.push(Prim::Quad {
                    v: [
                        index_at(0.15),
                        index_at(0.75),
                        thumb_at(0.92),
                        thumb_at(0.15),
                    ],
                    r: 6.0 * chubby,
                });
            } else {
                tissue.push(Prim::Cone {
                    a: base + v2(0.0, 4.0),
                    b: head + mc_dir * 17.0,
                    ra: 12.0 * chubby,
                    rb: 10.0 * chubby,
                });
            }
        }
        // Hypothenar eminence.
        tissue.push(Prim::Ellipse {
            c: v2(-27.0, -14.0),
            ax: v2(0.0, 1.0).rot(-8.0),
            a: 27.0 * chubby,
            b: 12.5 * chubby,
        });

        Scene {
            xf,
            tissue,
            groups,
            joints,
            plates,
            carpals,
            seed: p.seed,
        }
    }
}

/// Stores a bone's epiphysis centre in the joint slot `slots[ray]` (99 = not a
/// TW3 RUS bone).
fn record(joints: &mut [V2; 13], plates: &mut [V2; 13], ray: usize, slots: [usize; 5], b: &Built) {
    if let Some(&slot) = slots.get(ray) {
        if slot < 13 {
            joints[slot] = b.epi_centre;
            plates[slot] = b.plate;
        }
    }
}

fn make_xf(p: &HandParams, scale: f32, rot_deg: f32, offset: V2, jitter_deg: f32) -> Xf {
    // q_img = C + s · R(rot) · M · (offset + R(jitter) · q)
    let (sj, cj) = jitter_deg.to_radians().sin_cos();
    let j = [cj, -sj, sj, cj];
    let mx = if p.mirrored { -1.0 } else { 1.0 };
    // Counter-clockwise on screen with y pointing down.
    let (sr, cr) = rot_deg.to_radians().sin_cos();
    let r = [cr, sr, -sr, cr];
    let mul = |a: [f32; 4], b: [f32; 4]| {
        [
            a[0] * b[0] + a[1] * b[2],
            a[0] * b[1] + a[1] * b[3],
            a[2] * b[0] + a[3] * b[2],
            a[2] * b[1] + a[3] * b[3],
        ]
    };
    let rm = mul(r, [mx, 0.0, 0.0, 1.0]);
    let a0 = mul(rm, j);
    let a = a0.map(|v| v * scale);
    let centre = v2(p.width as f32 * 0.5, p.height as f32 * 0.5);
    let t = centre
        + v2(
            rm[0] * offset.x + rm[1] * offset.y,
            rm[2] * offset.x + rm[3] * offset.y,
        ) * scale;
    let det = a[0] * a[3] - a[1] * a[2];
    let inv = if det.abs() > 1e-20 {
        [a[3] / det, -a[1] / det, -a[2] / det, a[0] / det]
    } else {
        [0.0; 4]
    };
    Xf { a, t, inv, scale }
}

// ---------------------------------------------------------------------------
// Rendering.

const TILE: u32 = 16;
const BACKGROUND: f32 = 3000.0;
const TISSUE: f32 = 19000.0;
const BONE: f32 = 28000.0;
/// Projected-thickness peak of a reference bone (tube radius 3.5 mm, cortex 0.9 mm).
const REF_PEAK: f32 = 4.69;

struct Tiles {
    cols: u32,
    tissue: Vec<Vec<u16>>,
    groups: Vec<Vec<u16>>,
}

impl Scene {
    /// Pixel-space bounds of a hand-frame box, grown by `margin` pixels.
    fn px_bounds(&self, lo: V2, hi: V2, margin: f32) -> (V2, V2) {
        let mut a = v2(f32::INFINITY, f32::INFINITY);
        let mut b = v2(f32::NEG_INFINITY, f32::NEG_INFINITY);
        for c in [lo, v2(hi.x, lo.y), v2(lo.x, hi.y), hi] {
            let q = self.xf.project(c);
            a = a.min(q);
            b = b.max(q);
        }
        (a - v2(margin, margin), b + v2(margin, margin))
    }

    fn tiles(&self, w: u32, h: u32) -> Tiles {
        let cols = w.div_ceil(TILE);
        let rows = h.div_ceil(TILE);
        let n = (cols * rows) as usize;
        let mut tiles = Tiles {
            cols,
            tissue: vec![Vec::new(); n],
            groups: vec![Vec::new(); n],
        };
        let add = |lists: &mut Vec<Vec<u16>>, (a, b): (V2, V2), idx: usize| {
            if b.x < 0.0 || b.y < 0.0 || a.x >= w as f32 || a.y >= h as f32 {
                return;
            }
            let tx0 = (a.x.max(0.0) as u32) / TILE;
            let ty0 = (a.y.max(0.0) as u32) / TILE;
            let tx1 = ((b.x.min(w as f32 - 1.0)) as u32 / TILE).min(cols - 1);
            let ty1 = ((b.y.min(h as f32 - 1.0)) as u32 / TILE).min(rows - 1);
            for ty in ty0..=ty1 {
                for tx in tx0..=tx1 {
                    lists[(ty * cols + tx) as usize].push(idx as u16);
                }
            }
        };
        let tissue_margin = 1.5 * K_TISSUE * self.xf.scale + 3.0;
        for (i, prim) in self.tissue.iter().enumerate() {
            let (lo, hi) = prim.bounds();
            add(&mut tiles.tissue, self.px_bounds(lo, hi, tissue_margin), i);
        }
        for (i, g) in self.groups.iter().enumerate() {
            add(&mut tiles.groups, self.px_bounds(g.lo, g.hi, 3.0), i);
        }
        tiles
    }

    fn render(&self, w: u32, h: u32) -> Vec<u16> {
        if w == 0 || h == 0 {
            return Vec::new();
        }
        let tiles = self.tiles(w, h);
        let mut buf = vec![0u16; w as usize * h as usize];
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .clamp(1, 8);
        let rows_per = (h as usize).div_ceil(threads).max(1);
        let row_len = w as usize;
        std::thread::scope(|s| {
            for (ci, chunk) in buf.chunks_mut(rows_per * row_len).enumerate() {
                let tiles = &tiles;
                s.spawn(move || {
                    for (ri, row) in chunk.chunks_mut(row_len).enumerate() {
                        let y = (ci * rows_per + ri) as u32;
                        for (x, px) in row.iter_mut().enumerate() {
                            *px = self.shade(x as u32, y, w, h, tiles);
                        }
                    }
                });
            }
        });
        buf
    }

    fn shade(&self, x: u32, y: u32, w: u32, h: u32, tiles: &Tiles) -> u16 {
        let tile = ((y / TILE) * tiles.cols + x / TILE) as usize;
        let pc = v2(x as f32 + 0.5, y as f32 + 0.5);
        let q = self.xf.unproject(pc);
        // Hand millimetres per pixel; edges ramp over ~1.4 px.
        let mm_px = if self.xf.scale > 0.0 {
            1.0 / self.xf.scale
        } else {
            1.0
        };
        let ramp = 1.4 * mm_px;
        let coverage = |d: f32| (0.5 - d / ramp).clamp(0.0, 1.0);

        let mut d = f32::INFINITY;
        for &i in &tiles.tissue[tile] {
            d = smin(d, self.tissue[i as usize].sdf(q), K_TISSUE);
        }
        let mut tissue = 0.0;
        if d < ramp {
            let depth = (-d).max(0.0);
            let tex = 1.0 + 0.06 * (value_noise(q * (1.0 / 7.0), self.seed ^ 0x7155) - 0.5);
            tissue = coverage(d) * (1.0 - (-depth / 3.5).exp()) * tex;
        }

        let mut bone = 0.0;
        for &gi in &tiles.groups[tile] {
            let g = &self.groups[gi as usize];
            if q.x < g.lo.x - ramp
                || q.y < g.lo.y - ramp
                || q.x > g.hi.x + ramp
                || q.y > g.hi.y + ramp
            {
                continue;
            }
            let gd = g.sdf(q);
            if gd >= ramp {
                continue;
            }
            let trab = 1.0
                + 0.35 * (value_noise(q * (1.0 / 0.45), self.seed ^ 0xB0) - 0.5)
                + 0.35 * (value_noise(q * (1.0 / 1.3), self.seed ^ 0xB1) - 0.5);
            bone += coverage(gd) * g.gain * g.density((-gd).max(0.0), trab);
        }

        let mut v = BACKGROUND + TISSUE * tissue + BONE * bone;
        // Heel effect (anode side at the bottom) and a little vignetting.
        let fy = y as f32 / h as f32;
        let rx = (x as f32 + 0.5) / w as f32 - 0.5;
        let ry = fy - 0.5;
        v *= (1.04 - 0.08 * fy) * (1.0 - 0.12 * (rx * rx + ry * ry));
        // Quantum-like noise: roughly Gaussian, growing with the signal.
        let hsh =
            splitmix(splitmix(self.seed ^ 0xA0A0_5EED) ^ ((u64::from(y) << 32) | u64::from(x)));
        let g4 = ((hsh & 0xFFFF) + ((hsh >> 16) & 0xFFFF) + ((hsh >> 32) & 0xFFFF) + (hsh >> 48))
            as f32
            / 65536.0;
        let gauss = (g4 - 2.0) * 3f32.sqrt();
        v += gauss * (110.0 + 0.9 * v.max(0.0).sqrt());
        // Soft knee below the top of the range.
        const KNEE: f32 = 52000.0;
        if v > KNEE {
            v = KNEE + 13000.0 * (1.0 - (-(v - KNEE) / 13000.0).exp());
        }
        v.round().clamp(0.0, 65535.0) as u16
    }
}

// ---------------------------------------------------------------------------

/// Encodes an 8- or 16-bit grey image as PNG bytes (fixtures for tests and benchmarks).
pub fn png_bytes(img: impl Into<image::DynamicImage>) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing into a Vec cannot fail for a grey image; an empty result would show up
    // as `missing_image` in any test that used it.
    let _ = img
        .into()
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(seed: u64) -> HandParams {
        HandParams {
            width: 400,
            height: 520,
            seed,
            ..HandParams::default()
        }
    }

    fn mean(img: &ImageBuffer<Luma<u16>, Vec<u16>>, x0: u32, y0: u32, x1: u32, y1: u32) -> f64 {
        let mut s = 0.0;
        let mut n = 0.0;
        for y in y0..y1 {
            for x in x0..x1 {
                s += f64::from(img.get_pixel(x, y)[0]);
                n += 1.0;
            }
        }
        s / n
    }

    #[test]
    fn default_params() {
        let p = HandParams::default();
        assert_eq!((p.width, p.height), (1000, 1300));
        assert_eq!(p.maturity, 0.5);
        assert_eq!(p.rotation_deg, 0.0);
        assert!(!p.mirrored);
        assert_eq!(p.seed, 1);
    }

    #[test]
    fn deterministic() {
        let p = small(7);
        assert_eq!(
            hand_radiograph_16(&p).as_raw(),
            hand_radiograph_16(&p).as_raw()
        );
        assert_eq!(
            hand_radiograph_8(&p).as_raw(),
            hand_radiograph_8(&p).as_raw()
        );
        assert_eq!(joint_centres(&p), joint_centres(&p));
    }

    #[test]
    fn seeds_differ() {
        let a = hand_radiograph_16(&small(1));
        let b = hand_radiograph_16(&small(2));
        let differing = a
            .as_raw()
            .iter()
            .zip(b.as_raw())
            .filter(|(x, y)| x != y)
            .count();
        assert!(
            differing > a.as_raw().len() / 2,
            "only {differing} pixels differ"
        );
    }

    #[test]
    fn eight_bit_and_widening() {
        let p = small(3);
        let a16 = hand_radiograph_16(&p);
        let a8 = hand_radiograph_8(&p);
        assert_eq!(a8.dimensions(), a16.dimensions());
        for (v8, v16) in a8.as_raw().iter().zip(a16.as_raw()) {
            assert_eq!(*v8, (v16 >> 8) as u8);
        }
        let w = widen_to_16(&a8);
        assert_eq!(w.dimensions(), a8.dimensions());
        for (v8, v16) in a8.as_raw().iter().zip(w.as_raw()) {
            assert_eq!(*v16, u16::from(*v8) * 257);
        }
        let all: Vec<u8> = (0..=255).collect();
        let g = GrayImage::from_raw(256, 1, all).expect("256 pixels");
        let wide = widen_to_16(&g);
        assert_eq!(wide.get_pixel(0, 0)[0], 0);
        assert_eq!(wide.get_pixel(255, 0)[0], 65535);
    }

    #[test]
    fn sizes_honoured() {
        for (w, h) in [(400, 520), (640, 480), (123, 77), (1, 1), (0, 0), (0, 5)] {
            let p = HandParams {
                width: w,
                height: h,
                ..HandParams::default()
            };
            assert_eq!(hand_radiograph_16(&p).dimensions(), (w, h));
            assert_eq!(hand_radiograph_8(&p).dimensions(), (w, h));
        }
    }

    #[test]
    fn full_size_uses_the_range() {
        let img = hand_radiograph_16(&HandParams::default());
        assert_eq!(img.dimensions(), (1000, 1300));
        let max = img.as_raw().iter().copied().max().unwrap_or(0);
        let min = img.as_raw().iter().copied().min().unwrap_or(0);
        assert!(max > 45000, "max {max}");
        assert!(min < 4000, "min {min}");
    }

    #[test]
    fn hand_brighter_than_background() {
        for m in [0.0, 0.5, 1.0] {
            let p = HandParams {
                maturity: m,
                ..small(4)
            };
            let img = hand_radiograph_16(&p);
            let centre = mean(&img, 150, 230, 250, 330);
            let corners = [
                mean(&img, 0, 0, 30, 30),
                mean(&img, 370, 0, 400, 30),
                mean(&img, 0, 490, 30, 520),
                mean(&img, 370, 490, 400, 520),
            ];
            for c in corners {
                assert!(c < 5000.0, "corner {c}");
                assert!(centre > 2.5 * c, "centre {centre} vs corner {c}");
            }
        }
    }

    #[test]
    fn forearm_reaches_bottom_edge() {
        let img = hand_radiograph_16(&small(5));
        let bottom = mean(&img, 150, 510, 230, 520);
        assert!(bottom > 12000.0, "bottom {bottom}");
    }

    #[test]
    fn mirrored_is_horizontal_flip() {
        let p = small(6);
        let a = hand_radiograph_8(&p);
        let b = hand_radiograph_8(&HandParams {
            mirrored: true,
            ..p.clone()
        });
        let flipped = image::imageops::flip_horizontal(&b);
        let diff = |x: &GrayImage, y: &GrayImage| {
            let s: u64 = x
                .as_raw()
                .iter()
                .zip(y.as_raw())
                .map(|(u, v)| u64::from(u.abs_diff(*v)))
                .sum();
            s as f64 / x.as_raw().len() as f64
        };
        let d_flip = diff(&a, &flipped);
        let d_plain = diff(&a, &b);
        assert!(d_flip < 2.0, "flip differs by {d_flip}");
        assert!(
            d_plain > 4.0 * d_flip,
            "mirroring changes little: {d_plain}"
        );
        // The joints mirror too.
        let ja = joint_centres(&p);
        let jb = joint_centres(&HandParams {
            mirrored: true,
            ..p.clone()
        });
        for (u, v) in ja.iter().zip(&jb) {
            assert!((u.0 - (p.width as f32 - v.0)).abs() < 1e-2);
            assert!((u.1 - v.1).abs() < 1e-2);
        }
    }

    #[test]
    fn left_hand_thumb_on_the_right() {
        let j = joint_centres(&HandParams::default());
        // mc1 and dp1 right of mc3; radius right of ulna; fingers above the wrist.
        assert!(j[2].0 > j[3].0 && j[10].0 > j[11].0);
        assert!(j[0].0 > j[1].0);
        assert!(j[11].1 < j[6].1 && j[6].1 < j[3].1 && j[3].1 < j[0].1);
    }

    #[test]
    fn joints_inside_and_on_bone() {
        for (m, rot, mirrored) in [
            (0.0, 0.0, false),
            (0.25, 10.0, false),
            (0.5, -20.0, true),
            (0.75, 0.0, true),
            (1.0, 5.0, false),
        ] {
            let p = HandParams {
                maturity: m,
                rotation_deg: rot,
                mirrored,
                ..small(8)
            };
            let img = hand_radiograph_16(&p);
            for (i, &(x, y)) in joint_centres(&p).iter().enumerate() {
                assert!(x >= 1.0 && y >= 1.0, "joint {i} at ({x}, {y})");
                assert!(x < (p.width - 1) as f32 && y < (p.height - 1) as f32);
                let (xi, yi) = (x as u32, y as u32);
                let v = mean(&img, xi - 1, yi - 1, xi + 2, yi + 2);
                assert!(v > 27000.0, "joint {i} (m {m}) over {v}");
            }
        }
    }

    #[test]
    fn carpal_count_grows() {
        let count = |m| {
            Scene::build(&HandParams {
                maturity: m,
                ..HandParams::default()
            })
            .carpals
        };
        assert_eq!(count(0.0), 2);
        assert!(count(0.3) > 2 && count(0.3) < 8);
        assert_eq!(count(0.7), 8);
        assert_eq!(count(1.0), 8);
    }

    #[test]
    fn growth_plates_open_then_fuse() {
        // Sample the 16-bit image at the growth-plate mid-point and at the
        // epiphysis centre of the proximal phalanx of the middle finger (slot 6)
        // and of the radius (slot 0).
        for slot in [0, 6] {
            let at = |m: f32| {
                let p = HandParams {
                    maturity: m,
                    ..HandParams::default()
                };
                let scene = Scene::build(&p);
                let img = hand_radiograph_16(&p);
                let sample = |q: V2| {
                    let px = scene.xf.project(q);
                    let (x, y) = (px.x as u32, px.y as u32);
                    mean(&img, x - 1, y - 1, x + 2, y + 2)
                };
                (sample(scene.plates[slot]), sample(scene.joints[slot]))
            };
            let (plate, epi) = at(0.45);
            assert!(
                plate < 0.75 * epi,
                "slot {slot}: open plate {plate} vs {epi}"
            );
            let (plate, epi) = at(1.0);
            assert!(
                plate > 0.8 * epi,
                "slot {slot}: fused plate {plate} vs {epi}"
            );
        }
    }

    #[test]
    fn ellipse_distance_matches_brute_force() {
        let mut rng = Rng(11);
        for _ in 0..400 {
            let a = 1.0 + 9.0 * (rng.sym() + 1.0) * 0.5;
            let b = 1.0 + 9.0 * (rng.sym() + 1.0) * 0.5;
            let x = rng.sym() * 2.0 * a;
            let y = rng.sym() * 2.0 * b;
            let mut best = f32::INFINITY;
            for i in 0..20000 {
                let t = i as f32 / 20000.0 * std::f32::consts::TAU;
                best = best.min(v2(x - a * t.cos(), y - b * t.sin()).len());
            }
            let inside = (x / a).powi(2) + (y / b).powi(2) < 1.0;
            let exact = if inside { -best } else { best };
            let got = sd_ellipse(x, y, a, b);
            let k0 = ((x / a).powi(2) + (y / b).powi(2)).sqrt();
            if k0 > 1.6 {
                // Far outside only a bound matters: positive, and at least the
                // distance to the ellipse scaled by k0.
                assert!(got >= (k0 - 1.0) * a.min(b) - 1e-3, "({x}, {y}): {got}");
                assert!(got <= exact * 1.05 + 1e-3, "({x}, {y}): {got} vs {exact}");
            } else {
                assert!(
                    (got - exact).abs() <= 0.02,
                    "({x}, {y}) in ({a}, {b}): {got} vs {exact}"
                );
            }
        }
    }

    #[test]
    fn round_cone_distance() {
        let a = v2(0.0, 0.0);
        let b = v2(10.0, 0.0);
        assert!((sd_round_cone(v2(5.0, 0.0), a, b, 2.0, 2.0) + 2.0).abs() < 1e-4);
        assert!((sd_round_cone(v2(5.0, 5.0), a, b, 2.0, 2.0) - 3.0).abs() < 1e-4);
        assert!((sd_round_cone(v2(-4.0, 0.0), a, b, 2.0, 1.0) - 2.0).abs() < 1e-4);
        assert!((sd_round_cone(v2(13.0, 0.0), a, b, 2.0, 1.0) - 2.0).abs() < 1e-4);
    }
}

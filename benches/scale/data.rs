//! Seeded synthetic data: unit vectors from a mixture of gaussian clusters (so an ANN index has
//! structure to exploit and recall is neither trivial nor hopeless) and short random texts.
//! Every row is a pure function of (seed, row), so a size can be streamed, not held.

use ltre_core::testing::SplitMix64;

pub const DIM: usize = 384;
/// Mixture components.
pub const CLUSTERS: usize = 1000;
/// Per-coordinate noise around a (unit) centroid: the noise norm is about 0.05 * sqrt(384) ~ 1,
/// so two rows of one cluster have cosine ~0.5 and the nearest neighbours are not trivial.
pub const SIGMA: f32 = 0.05;
/// Distinct words of the text field (log-uniform, so a few are common and most are rare).
pub const VOCAB: f64 = 20_000.0;

/// The tests' SplitMix64 (small, seedable), with the draws the generator needs.
pub struct Rng(SplitMix64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(SplitMix64(seed))
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    /// Two standard normals (Box-Muller).
    pub fn normals(&mut self) -> (f32, f32) {
        let u = self.unit().max(1e-300);
        let v = self.unit();
        let r = (-2.0 * u.ln()).sqrt();
        let t = std::f64::consts::TAU * v;
        ((r * t.cos()) as f32, (r * t.sin()) as f32)
    }
}

fn fill_normal(rng: &mut Rng, out: &mut [f32]) {
    for pair in out.chunks_mut(2) {
        let (a, b) = rng.normals();
        pair[0] = a;
        if let Some(x) = pair.get_mut(1) {
            *x = b;
        }
    }
}

fn normalize(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= n);
}

/// The mixture: `CLUSTERS` random unit centroids.
pub struct Mixture {
    seed: u64,
    centroids: Vec<f32>,
}

/// Streams of the generator: documents, queries, texts.
const DOCS: u64 = 1 << 40;
const QUERIES: u64 = 2 << 40;
const TEXTS: u64 = 3 << 40;

impl Mixture {
    pub fn new(seed: u64) -> Mixture {
        let mut rng = Rng::new(seed);
        let mut centroids = vec![0f32; CLUSTERS * DIM];
        for c in centroids.chunks_mut(DIM) {
            fill_normal(&mut rng, c);
            normalize(c);
        }
        Mixture { seed, centroids }
    }

    fn sample(&self, stream: u64, i: u64, out: &mut [f32]) {
        let mut rng = Rng::new(self.seed ^ stream ^ i.wrapping_mul(0x2545_f491_4f6c_dd1d));
        let c = rng.below(CLUSTERS);
        fill_normal(&mut rng, out);
        for (x, m) in out.iter_mut().zip(&self.centroids[c * DIM..(c + 1) * DIM]) {
            *x = m + SIGMA * *x;
        }
        normalize(out);
    }

    /// Document row `i`.
    pub fn doc(&self, i: u64, out: &mut [f32]) {
        self.sample(DOCS, i, out)
    }

    /// Query `j`: a fresh draw from the same mixture.
    pub fn query(&self, j: u64) -> Vec<f32> {
        let mut v = vec![0f32; DIM];
        self.sample(QUERIES, j, &mut v);
        v
    }

    /// `words` random words (`t<k>`, k log-uniform in the vocabulary) for document or query `i`.
    pub fn text(&self, i: u64, words: usize, query: bool) -> String {
        let stream = if query { TEXTS ^ QUERIES } else { TEXTS };
        let mut rng = Rng::new(self.seed ^ stream ^ i.wrapping_mul(0x9e37_79b9));
        let mut s = String::new();
        for w in 0..words {
            let k = VOCAB.powf(rng.unit()) as u64;
            if w > 0 {
                s.push(' ');
            }
            s.push('t');
            s.push_str(&k.to_string());
        }
        s
    }
}

/// `VmHWM` and `VmRSS` of this process, MiB (0 where /proc is not readable).
pub fn rss_mib() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// Median of `xs` (sorted in place); 0 for none.
pub fn median(xs: &mut [f64]) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// Bytes under `path`.
pub fn dir_bytes(path: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

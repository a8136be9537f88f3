//! The record of a campaign: its seeded RNG, the kills it made and the promises it saw
//! broken.

use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------
// The seeded RNG (splitmix64): the same seed gives the same kill delays.

pub struct Rng(u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The campaign seed: `LIFEBOAT_CAMPAIGN_SEED` to replay, otherwise a fresh one.
pub fn seed() -> u64 {
    match std::env::var("LIFEBOAT_CAMPAIGN_SEED") {
        Ok(s) => s
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("LIFEBOAT_CAMPAIGN_SEED={s}: not an unsigned integer")),
        Err(_) => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64;
            nanos ^ u64::from(std::process::id()).rotate_left(32)
        }
    }
}

// ---------------------------------------------------------------------------------------
// The record of one campaign: what was tried, what broke.

pub struct Campaign {
    pub name: &'static str,
    pub seed: u64,
    pub rng: Rng,
    pub trials: usize,
    pub killed: usize,
    pub finished_first: usize,
    pub delays: Vec<Duration>,
    pub measured: Duration,
    /// The longest measured run kills were spread over.
    pub longest_run: Duration,
    pub violations: Vec<String>,
    pub started: Instant,
}

impl Campaign {
    pub fn new(name: &'static str, trials: usize) -> Campaign {
        let seed = seed();
        eprintln!(
            "kill campaign {name}: {trials} trials, seed {seed} (replay with LIFEBOAT_CAMPAIGN_SEED={seed})"
        );
        // Each campaign draws from its own stream, so one can be replayed alone.
        let mut mix = Rng(seed ^ fnv(name));
        let rng = Rng(mix.next());
        Campaign {
            name,
            seed,
            rng,
            trials,
            killed: 0,
            finished_first: 0,
            delays: Vec::new(),
            measured: Duration::ZERO,
            longest_run: Duration::ZERO,
            violations: Vec::new(),
            started: Instant::now(),
        }
    }

    /// A kill delay, uniform over the measured duration of an unkilled run.
    pub fn delay(&mut self) -> Duration {
        let d = self.measured.mul_f64(self.rng.unit());
        self.delays.push(d);
        self.longest_run = self.longest_run.max(self.measured);
        d
    }

    pub fn fail(&mut self, trial: usize, check: &str, detail: impl std::fmt::Display) {
        let line = format!("trial {trial}: {check}: {detail}");
        eprintln!("VIOLATION {}: {line}", self.name);
        self.violations.push(line);
    }

    pub fn check(&mut self, trial: usize, ok: bool, check: &str, detail: impl std::fmt::Display) {
        if !ok {
            self.fail(trial, check, detail);
        }
    }

    /// Count the trial's fate; a run the kill came too late for must have succeeded.
    pub fn killed(&mut self, trial: usize, fate: &Fate) {
        match fate {
            Fate::Killed => self.killed += 1,
            Fate::Finished(code) => {
                self.finished_first += 1;
                self.check(
                    trial,
                    *code == Some(0),
                    "a run that ends before the kill succeeds",
                    format_args!("exit {code:?}"),
                );
            }
        }
    }

    /// Print the figures, then fail with every broken promise.
    pub fn finish(self) {
        let mut delays: Vec<f64> = self.delays.iter().map(Duration::as_secs_f64).collect();
        delays.sort_by(f64::total_cmp);
        let spread = match (delays.first(), delays.last()) {
            (Some(a), Some(b)) => format!("{a:.3}s..{b:.3}s"),
            _ => "none".into(),
        };
        let summary = format!(
            "kill campaign {}: seed {}, {} trials, {} killed mid-run, {} finished before the kill, \
             unkilled run up to {:.3}s, kill delays {spread}, {} violations, {:.1}s in all",
            self.name,
            self.seed,
            self.trials,
            self.killed,
            self.finished_first,
            self.longest_run.as_secs_f64(),
            self.violations.len(),
            self.started.elapsed().as_secs_f64()
        );
        eprintln!("{summary}");
        // Delays spread over the whole run land mid-run most of the time; none at all
        // would mean the campaign tested nothing.
        let mut violations = self.violations;
        if self.trials >= 10 && self.killed < self.trials / 2 {
            violations.push(format!(
                "only {} of {} trials killed the command mid-run",
                self.killed, self.trials
            ));
        }
        assert!(
            violations.is_empty(),
            "{summary}\n{}\n(replay with LIFEBOAT_CAMPAIGN_SEED={})",
            violations.join("\n"),
            self.seed
        );
    }
}

pub fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// How a killed command ended.
#[derive(Debug)]
pub enum Fate {
    /// SIGKILL reached it while it ran.
    Killed,
    /// It exited on its own before the kill was due (with this code).
    Finished(Option<i32>),
}

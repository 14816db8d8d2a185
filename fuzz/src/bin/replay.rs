//! Replays a corpus through a harness in a plain (non-sanitized,
//! non-instrumented) release build and times every input:
//!
//!     cargo run --release --bin replay -- <target> <dir|file>... [--verbose]
//!
//! Each input runs three times and its time is the median (the machine is
//! shared: one run can be preempted). Prints one line per input with
//! `--verbose` (time and what the gateway decided), then a summary line
//! `REPLAY target=… inputs=… slowest_ms=… slowest=… over_50ms=… panics=…`.
//! An input over 50 ms is reported with five more runs. Exits 1 on a panic
//! or a slow input.

use std::path::PathBuf;
use std::time::Instant;

const LIMIT_MS: f64 = 50.0;

fn files(args: &[String]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for a in args {
        let p = PathBuf::from(a);
        if p.is_dir() {
            let mut v: Vec<PathBuf> = std::fs::read_dir(&p)
                .unwrap()
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect();
            v.sort();
            out.extend(v);
        } else if p.is_file() {
            out.push(p);
        }
    }
    out
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let verbose = args.iter().any(|a| a == "--verbose");
    let args: Vec<String> = args.into_iter().filter(|a| a != "--verbose").collect();
    let Some((target, paths)) = args.split_first() else {
        eprintln!("usage: replay <{}> <dir|file>... [--verbose]", portcullis_fuzz::TARGETS.join("|"));
        std::process::exit(2);
    };
    let Some(h) = portcullis_fuzz::harness(target) else {
        eprintln!("unknown target {target}");
        std::process::exit(2);
    };
    let inputs = files(paths);
    // Registries, xmlsec and libxml2 initialised before anything is timed.
    portcullis_fuzz::env();
    if let Some(first) = inputs.first() {
        let _ = std::panic::catch_unwind(|| h(&std::fs::read(first).unwrap()));
    }
    std::panic::set_hook(Box::new(|_| {}));
    let (mut slowest, mut slowest_ms, mut panics, mut slow) = (None, 0.0f64, 0usize, Vec::new());
    let started = Instant::now();
    for f in &inputs {
        let data = std::fs::read(f).unwrap();
        let t = Instant::now();
        let r = std::panic::catch_unwind(|| h(&data));
        let mut runs = [ms(t), 0.0, 0.0];
        for r in &mut runs[1..] {
            let t = Instant::now();
            let _ = std::panic::catch_unwind(|| h(&data));
            *r = ms(t);
        }
        runs.sort_by(f64::total_cmp);
        let took = runs[1];
        let outcome = match r {
            Ok(o) => o,
            Err(e) => {
                panics += 1;
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                eprintln!("PANIC {}: {msg}", f.display());
                format!("PANIC: {msg}")
            }
        };
        if verbose {
            println!("{took:9.3} ms  {:<60} {outcome}", f.display());
        }
        if took > LIMIT_MS {
            let mut again: Vec<f64> = (0..5)
                .map(|_| {
                    let t = Instant::now();
                    let _ = std::panic::catch_unwind(|| h(&data));
                    ms(t)
                })
                .collect();
            again.sort_by(f64::total_cmp);
            eprintln!(
                "SLOW {}: median of 3 runs {took:.1} ms, median of 5 more {:.1} ms",
                f.display(),
                again[2]
            );
            if again[2] > LIMIT_MS {
                slow.push(f.clone());
            }
        }
        if took > slowest_ms {
            slowest_ms = took;
            slowest = Some(f.clone());
        }
    }
    println!(
        "REPLAY target={target} inputs={} total_s={:.1} slowest_ms={slowest_ms:.3} slowest={} over_50ms={} panics={panics}",
        inputs.len(),
        started.elapsed().as_secs_f64(),
        slowest.map(|p| p.display().to_string()).unwrap_or_default(),
        slow.len()
    );
    if panics > 0 || !slow.is_empty() {
        std::process::exit(1);
    }
}

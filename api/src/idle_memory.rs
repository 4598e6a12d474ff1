//! Gives memory the server freed back to the operating system once a
//! worker thread goes idle.
//!
//! mimalloc (the global allocator, `main.rs`) keeps freed pages for
//! `purge_delay` (1 s by default in v3) and purges them only when a
//! thread next allocates or collects. A server that has just answered a
//! burst (200 WebSocket handshakes at once, a large query) and then waits
//! on its sockets allocates nothing, so it kept that memory: measured,
//! 1000 `GET /healthz` requests 50 at a time left 6.5 MB of RSS behind,
//! one at a time 0.1 MB. Two steps give it back:
//!
//! - every tokio worker calls `mi_collect(false)` when it parks (it has
//!   no task to run), at most once per [`MIN_INTERVAL`]: the worker's
//!   empty pages go back to mimalloc's arenas, where they are due for
//!   purging after the delay ([`PURGE_DELAY_MS`]);
//! - one background thread calls `mi_collect(false)` every
//!   [`JANITOR_PERIOD`]: arena purging is process-wide, so it purges
//!   what became due while the workers sleep (an idle worker parks
//!   without a timeout and would not collect again).
//!
//! `mi_collect(false)` forces nothing: memory in use is untouched, and
//! an arena purges at most once per delay after its first free (so
//! memory freed just before that moment may go with it). A busy worker
//! rarely parks and its own allocations purge as before. Decision recorded in ARCHITECTURE.md
//! (Decisions).
//!
//! The workspace denies `unsafe`; this module is the exception: four
//! calls into mimalloc's C API, each with its `SAFETY` note.
#![allow(unsafe_code)]

use std::cell::Cell;
use std::time::{Duration, Instant};

use libmimalloc_sys::{mi_collect, mi_option_set, mi_option_t};

/// `mi_option_purge_delay` in `mimalloc.h` (v3: index 15, after
/// `mi_option_deprecated_eager_commit_delay`); the Rust bindings do not
/// name it. The unit test checks the index against the
/// option's documented default.
const MI_OPTION_PURGE_DELAY: mi_option_t = 15;

/// How long freed memory stays committed before it may be purged:
/// mimalloc v2's 10 ms purged on every burst of frees; v3's 1 s keeps
/// a burst's memory for a second. A tenth of a second reuses memory
/// across back-to-back requests and gives it back soon after.
const PURGE_DELAY_MS: i64 = 100;

/// Least time between two collections on one worker: a worker under
/// load parks thousands of times a second, and a collection visits the
/// worker's pages.
const MIN_INTERVAL: Duration = Duration::from_millis(10);

/// How often the background thread purges what is due.
const JANITOR_PERIOD: Duration = Duration::from_millis(250);

/// The environment variables through which an operator sets the purge
/// delay (mimalloc's name and its legacy one); when one is set, it wins.
const PURGE_DELAY_ENV: [&str; 2] = ["MIMALLOC_PURGE_DELAY", "MIMALLOC_RESET_DELAY"];

/// Sets the purge delay (unless the operator set it) and starts the
/// background thread; call once, before the runtime starts.
pub fn configure() -> std::io::Result<()> {
    if PURGE_DELAY_ENV
        .iter()
        .all(|v| std::env::var_os(v).is_none())
    {
        set_purge_delay();
    }
    std::thread::Builder::new()
        .name("beacon-idle-memory".into())
        .spawn(janitor)?;
    Ok(())
}

/// The background thread: purges what fell due, every [`JANITOR_PERIOD`].
fn janitor() {
    // mi_collect returns at once on a thread whose mimalloc heap was
    // never set up, and this thread would otherwise never allocate.
    // SAFETY: initializes this thread's mimalloc heap; no arguments.
    unsafe { libmimalloc_sys::mi_thread_init() };
    loop {
        std::thread::sleep(JANITOR_PERIOD);
        collect();
    }
}

fn set_purge_delay() {
    // SAFETY: mi_option_set only stores an integer in mimalloc's option
    // table; MI_OPTION_PURGE_DELAY is a valid option index (see the test).
    unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS as _) };
}

fn collect() {
    // SAFETY: collects the calling thread's own mimalloc heap and purges
    // arena memory that has been free for the delay; no pointer is passed
    // and memory in use is never released.
    unsafe { mi_collect(false) };
}

/// The purge delay in effect, in milliseconds.
#[cfg(test)]
fn purge_delay_ms() -> i64 {
    // SAFETY: reads one entry of mimalloc's option table.
    unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) as i64 }
}

thread_local! {
    static LAST: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// For `tokio::runtime::Builder::on_thread_park`: collects this worker's
/// free memory, at most once per [`MIN_INTERVAL`].
pub fn on_park() {
    let now = Instant::now();
    let due = LAST.with(|last| match last.get() {
        Some(at) if now.duration_since(at) < MIN_INTERVAL => false,
        _ => {
            last.set(Some(now));
            true
        }
    });
    if due {
        collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One test, in this order: the option's default can only be read
    /// before anything in the process sets it.
    #[test]
    fn purge_delay_is_set_and_a_freed_burst_goes_back() {
        use libmimalloc_sys::mi_option_get;
        // v3's documented default, read before this process changes it:
        // a wrong index would read another option's default.
        if PURGE_DELAY_ENV
            .iter()
            .all(|v| std::env::var_os(v).is_none())
        {
            assert_eq!(purge_delay_ms(), 1000);
        }
        set_purge_delay();
        assert_eq!(purge_delay_ms(), PURGE_DELAY_MS);
        // Neighbouring options keep their defaults (eager commit delay 1,
        // NUMA nodes 0).
        // SAFETY: reads entries of mimalloc's option table.
        unsafe {
            assert_eq!(mi_option_get(14), 1);
            assert_eq!(mi_option_get(16), 0);
        }
        a_freed_burst_goes_back_after_the_delay();
    }

    /// Resident memory of this process in bytes (Linux: `VmRSS` of
    /// `/proc/self/status`), read without allocating, so that reading it
    /// never frees a page (which would let mimalloc purge by itself).
    fn rss() -> usize {
        use std::io::Read;
        let mut buf = [0u8; 4096];
        let mut file = std::fs::File::open("/proc/self/status").expect("Linux /proc");
        let mut len = 0;
        while len < buf.len() {
            match file.read(&mut buf[len..]).expect("read /proc/self/status") {
                0 => break,
                n => len += n,
            }
        }
        let text = std::str::from_utf8(&buf[..len]).expect("ASCII");
        let line = text
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .expect("VmRSS");
        let kib: usize = line
            .trim_start_matches("VmRSS:")
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .expect("a number of kB");
        kib * 1024
    }

    /// What the module is for: memory a burst freed is resident until the
    /// thread that freed it collects; its park hands the pages to the
    /// arenas, and the janitor purges them once due, while the thread
    /// that freed them sleeps and allocates nothing.
    fn a_freed_burst_goes_back_after_the_delay() {
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let (freed_tx, freed_rx) = std::sync::mpsc::channel::<usize>();
        let worker = std::thread::spawn(move || {
            // 64 MiB in blocks the size of a handshake's buffers, touched.
            let blocks: Vec<Vec<u8>> = (0..8192).map(|i| vec![i as u8; 8192]).collect();
            let peak = rss();
            drop(blocks);
            // A worker that runs out of work parks once, then sleeps.
            on_park();
            freed_tx.send(peak).unwrap();
            done_rx.recv().unwrap();
        });
        let peak = freed_rx.recv().unwrap();
        std::thread::spawn(janitor);
        // Without the janitor the pages stay resident (checked by hand:
        // RSS stays within a few MiB of the peak). Bounded: at most 5 s.
        let mut after = rss();
        for _ in 0..50 {
            std::thread::sleep(Duration::from_millis(100));
            after = rss();
            if after + (32 << 20) < peak {
                break;
            }
        }
        done_tx.send(()).unwrap();
        worker.join().unwrap();
        assert!(
            after + (32 << 20) < peak,
            "RSS {after} after freeing 64 MiB, {peak} at the peak"
        );
    }
}

//! Releasing the code pages an agent touched only while it started.
//!
//! Most of an idle agent's resident set is code mapped from files: the
//! `roster` binary and the C library. Parsing the command line and the
//! configuration, loading certificates and opening the data directory touch
//! megabytes of code that an idle agent never runs again, yet every page once
//! touched stays in the process's page tables and counts in its RSS. Such a
//! page is unmodified and backed by its file, so the agent can drop its own
//! mapping of it (`madvise(MADV_DONTNEED)`): the page stays in the page cache,
//! shared with every other process that maps the file, and the next access to
//! it maps it again with a minor fault. What the agent runs while idle comes
//! back within seconds; the rest stays out of its RSS.
//!
//! Only mappings that are backed by a regular file, private, not writable and
//! hold no page of their own (`Anonymous: 0 kB` in `/proc/self/smaps`) are
//! released: there, dropping a page loses nothing. A mapping that holds a
//! page of its own (relocated read-only data, or a debugger's breakpoint in
//! code) is left alone, and so is everything anonymous (heap, stacks).
//!
//! Each release also asks the C allocator (glibc) to give the system back
//! the free pages of its heap (`malloc_trim`). What a burst allocated and
//! freed, such as the connections a forming cluster opens to nearly every
//! member and closes when they fall idle, otherwise stays resident.

use std::time::Duration;

/// When the first release happens after the agent starts: by then a small
/// cluster has formed; the releases after it catch what the formation of a
/// larger one ran.
pub const FIRST_RELEASE: Duration = Duration::from_secs(10);

/// How often the release is repeated afterwards, so code run only now and
/// then (a reload, a burst of reconnections) does not stay resident for the
/// agent's life.
pub const RELEASE_EVERY: Duration = Duration::from_secs(60);

/// One mapping of `/proc/self/smaps` that may be released.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mapping {
    start: usize,
    end: usize,
    /// Resident kB when read.
    rss_kb: u64,
}

/// What one release did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Released {
    /// Mappings released.
    pub mappings: usize,
    /// Their resident kB just before the release.
    pub kb: u64,
    /// Mappings the kernel refused to release (locked, sealed or gone):
    /// left as they were.
    pub refused: usize,
}

/// Whether `path` names a shared object the dynamic loader maps for the
/// process's life (`libc.so.6`, `ld-linux-x86-64.so.2`, `libfoo.so`), not
/// a file some library maps for a moment (`/etc/ld.so.cache`).
fn is_shared_object(path: &str) -> bool {
    let path = path.strip_suffix(" (deleted)").unwrap_or(path);
    let name = path.rsplit('/').next().unwrap_or(path);
    let Some(at) = name.find(".so") else {
        return false;
    };
    let rest = &name[at + 3..];
    rest.is_empty()
        || rest.strip_prefix('.').is_some_and(|versions| {
            versions
                .split('.')
                .all(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
        })
}

/// The mappings of `smaps` text that [`release`] may drop: private, not
/// writable, of the program itself (`exe`, as `/proc/self/exe` names it) or
/// of a shared object, with some page resident and none of the process's
/// own, in memory or in swap (`Anonymous:` and `Swap:` both present and 0).
/// Those files stay mapped for the process's life, so no other mapping can
/// take their place between the reading of `smaps` and the release.
fn releasable(smaps: &str, exe: &str) -> Vec<Mapping> {
    /// The mapping being read, if its header qualifies, with its
    /// `Anonymous:` and `Swap:` values once read.
    struct Reading {
        mapping: Mapping,
        anonymous: Option<u64>,
        swap: Option<u64>,
    }
    fn finish(r: Option<Reading>, out: &mut Vec<Mapping>) {
        if let Some(r) = r
            && r.anonymous == Some(0)
            && r.swap == Some(0)
            && r.mapping.rss_kb > 0
        {
            out.push(r.mapping);
        }
    }
    let mut out = Vec::new();
    let mut current: Option<Reading> = None;
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let Some(first) = fields.next() else {
            continue;
        };
        if let Some((lo, hi)) = first.split_once('-')
            && let (Ok(start), Ok(end)) =
                (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
        {
            // A mapping's header: "start-end perms offset dev inode [path]",
            // the path (which may hold spaces) from the first '/' on.
            finish(current.take(), &mut out);
            let perms = fields.next().unwrap_or("");
            let path = line.find(" /").map(|at| line[at + 1..].trim_end());
            let ours = path.is_some_and(|p| p == exe || is_shared_object(p));
            let read_only_private =
                perms.len() == 4 && perms.as_bytes()[1] == b'-' && perms.as_bytes()[3] == b'p';
            if ours && read_only_private && end > start {
                current = Some(Reading {
                    mapping: Mapping {
                        start,
                        end,
                        rss_kb: 0,
                    },
                    anonymous: None,
                    swap: None,
                });
            }
            continue;
        }
        let Some(r) = current.as_mut() else {
            continue;
        };
        let value = fields.next().and_then(|v| v.parse::<u64>().ok());
        match first {
            "Rss:" => r.mapping.rss_kb = value.unwrap_or(0),
            "Anonymous:" => r.anonymous = value,
            "Swap:" => r.swap = value,
            _ => {}
        }
    }
    finish(current, &mut out);
    out
}

/// Drops this process's mapping of the file-backed, unmodified, read-only
/// pages it holds (see the module's docs), then returns the heap's free
/// pages (glibc). Linux only; elsewhere it does nothing. An error only when
/// the process's own maps cannot be read.
#[allow(unsafe_code)]
pub fn release() -> std::io::Result<Released> {
    #[cfg(target_os = "linux")]
    {
        let exe = std::fs::read_link("/proc/self/exe")?;
        let smaps = std::fs::read_to_string("/proc/self/smaps")?;
        let mut done = Released::default();
        for m in releasable(&smaps, &exe.to_string_lossy()) {
            // SAFETY: `m` is a private, read-only mapping of the program
            // or of a shared object, which stay mapped for the process's
            // life, and it holds no page of its own, in memory or in swap
            // (never written), so MADV_DONTNEED only unmaps page-cache
            // pages, and any later access maps the same file contents
            // again. The range is exactly one mapping's, page aligned as
            // the kernel reported it.
            let rc = unsafe {
                libc::madvise(
                    m.start as *mut libc::c_void,
                    m.end - m.start,
                    libc::MADV_DONTNEED,
                )
            };
            if rc == 0 {
                done.mappings += 1;
                done.kb += m.rss_kb;
            } else {
                done.refused += 1;
            }
        }
        #[cfg(target_env = "gnu")]
        {
            // SAFETY: malloc_trim only returns free heap pages to the
            // system; it takes the allocator's locks like any allocation.
            let _ = unsafe { libc::malloc_trim(0) };
        }
        Ok(done)
    }
    #[cfg(not(target_os = "linux"))]
    {
        Ok(Released::default())
    }
}

/// Releases after [`FIRST_RELEASE`], then every [`RELEASE_EVERY`], logging
/// what each release dropped; stops if the process's maps cannot be read
/// (logged once).
pub async fn release_periodically() {
    let mut wait = FIRST_RELEASE;
    loop {
        tokio::time::sleep(wait).await;
        wait = RELEASE_EVERY;
        match tokio::task::spawn_blocking(release).await {
            Ok(Ok(r)) => tracing::debug!(
                mappings = r.mappings,
                kb = r.kb,
                refused = r.refused,
                "released resident code pages"
            ),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot read this process's maps; keeping its code pages resident");
                return;
            }
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXE: &str = "/usr/bin/roster";

    /// One mapping as `/proc/self/smaps` prints it: its header, then the
    /// lines the parser reads among others.
    fn mapping(range: &str, perms: &str, path: &str, rss: u64, anon: u64, swap: u64) -> String {
        let (dev, inode) = if path.starts_with('/') {
            ("fd:01", "77")
        } else {
            ("00:00", "0")
        };
        format!(
            "{range} {perms} 00000000 {dev} {inode}                        {path}\n\
             Rss: {rss:>20} kB\nPss: {rss:>20} kB\nAnonymous: {anon:>14} kB\n\
             Swap: {swap:>19} kB\nVmFlags: rd mr mw me\n"
        )
    }

    /// One mapping of each kind; the first test names those that may be
    /// released.
    fn smaps() -> String {
        [
            ("5555aaaa0000-5555aaab0000", "r--p", EXE, 48, 0, 0),
            ("5555aaab0000-5555aacb0000", "r-xp", EXE, 1900, 0, 0),
            ("5555aacb0000-5555aacc0000", "r--p", EXE, 64, 64, 0),
            ("5555aacc0000-5555aacd0000", "r--p", EXE, 12, 0, 8),
            ("5555aacd0000-5555aace0000", "rw-p", EXE, 16, 0, 0),
            ("5555aace0000-5555aacf0000", "rw-p", "[heap]", 32, 32, 0),
            (
                "7f0000000000-7f0000010000",
                "r-xp",
                "/usr/lib/libc.so.6",
                0,
                0,
                0,
            ),
            (
                "7f0000010000-7f0000020000",
                "r-xp",
                "/usr/lib/libm.so.6",
                12,
                0,
                0,
            ),
            (
                "7f0000020000-7f0000030000",
                "r--s",
                "/usr/lib/libshared.so",
                4,
                0,
                0,
            ),
            ("7f0000030000-7f0000040000", "rw-s", "/dev/shm/x", 4, 0, 0),
            (
                "7f0000040000-7f0000050000",
                "r--p",
                "/etc/ld.so.cache",
                20,
                0,
                0,
            ),
            (
                "7f0000050000-7f0000060000",
                "r-xp",
                "/opt/my app/lib/libx.so",
                8,
                0,
                0,
            ),
            (
                "7f0000060000-7f0000070000",
                "r-xp",
                "/usr/lib/libold.so.1.2 (deleted)",
                4,
                0,
                0,
            ),
            ("7f0000070000-7f0000080000", "r-xp", "", 4, 0, 0),
            ("7ffd00000000-7ffd00002000", "r-xp", "[vdso]", 8, 0, 0),
        ]
        .into_iter()
        .map(|(range, perms, path, rss, anon, swap)| mapping(range, perms, path, rss, anon, swap))
        .collect()
    }

    #[test]
    fn only_unmodified_read_only_pages_of_the_program_and_its_libraries_are_released() {
        let got = releasable(&smaps(), EXE);
        let starts: Vec<usize> = got.iter().map(|m| m.start).collect();
        assert_eq!(
            starts,
            vec![
                0x5555aaaa0000, // the program's read-only data
                0x5555aaab0000, // the program's code
                0x7f0000010000, // libm's code
                0x7f0000050000, // a library whose path holds a space
                0x7f0000060000, // a library replaced on disk since it was mapped
            ],
            "{got:?}"
        );
        assert_eq!(got[1].end - got[1].start, 0x200000);
        assert_eq!(
            got.iter().map(|m| m.rss_kb).sum::<u64>(),
            48 + 1900 + 12 + 8 + 4
        );
        // Another program's mappings of the same files are not its own.
        let others: Vec<usize> = releasable(&smaps(), "/usr/bin/other")
            .iter()
            .map(|m| m.start)
            .collect();
        assert_eq!(others, vec![0x7f0000010000, 0x7f0000050000, 0x7f0000060000]);
    }

    #[test]
    fn a_mapping_without_its_anonymous_or_swap_line_is_kept() {
        // Without the kernel's word that no page is the process's own, in
        // memory or in swap, the mapping is not touched.
        let header =
            "5555aaab0000-5555aacb0000 r-xp 00010000 fd:01 123 /usr/bin/roster\nRss: 1900 kB\n";
        assert!(releasable(header, EXE).is_empty());
        assert!(releasable(&format!("{header}Anonymous: 0 kB\n"), EXE).is_empty());
        assert!(releasable(&format!("{header}Swap: 0 kB\n"), EXE).is_empty());
        assert_eq!(
            releasable(&format!("{header}Anonymous: 0 kB\nSwap: 0 kB\n"), EXE).len(),
            1
        );
    }

    #[test]
    fn shared_objects_are_told_from_other_files() {
        for yes in [
            "/lib/libc.so.6",
            "/lib64/ld-linux-x86-64.so.2",
            "/x/libfoo.so",
            "/x/liba.so.1.2.3",
        ] {
            assert!(is_shared_object(yes), "{yes}");
        }
        for no in [
            "/etc/ld.so.cache",
            "/x/libfoo.so.bak",
            "/x/notes.sox",
            "/x/a.so.",
            "/usr/bin/roster",
        ] {
            assert!(!is_shared_object(no), "{no}");
        }
    }

    /// Data in the test program's read-only pages, released with its code.
    static TABLE: [u64; 1024] = {
        let mut t = [0u64; 1024];
        let mut i = 0;
        while i < t.len() {
            t[i] = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            i += 1;
        }
        t
    };

    fn digest() -> u64 {
        TABLE.iter().fold(0, |a, x| a.rotate_left(7) ^ x)
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn releasing_leaves_the_process_running_its_code() {
        // A real release of this test process's own code and libraries:
        // everything after it runs from pages mapped back in, and reads
        // the same data.
        let before = digest();
        let first = release().expect("release");
        assert!(first.mappings > 0 && first.kb > 0, "{first:?}");
        assert_eq!(digest(), before);
        let f: Box<dyn Fn(u64) -> u64> = Box::new(|x| x * 3);
        assert_eq!(f(7), 21);
        // Only what ran since is resident again: far less than before.
        let exe = std::fs::read_link("/proc/self/exe").expect("exe");
        let smaps = std::fs::read_to_string("/proc/self/smaps").expect("smaps");
        let back: u64 = releasable(&smaps, &exe.to_string_lossy())
            .iter()
            .map(|m| m.rss_kb)
            .sum();
        assert!(
            back < first.kb,
            "{back} kB back of {} kB released",
            first.kb
        );
    }
}

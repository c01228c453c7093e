//! The repository's one worker pool: a slice of work items spread over scoped threads, each
//! with state of its own, results in item order, stopping at the first error. Commits read
//! changed files with it; checkouts write a directory's files with it.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `work` on every item of `items` on up to `threads` threads (on the calling thread when
/// one is enough), each thread with the state `init` makes (a read buffer, an open
/// directory). Returns the results in the order of `items`, or the first error: once one
/// item fails, no thread starts another.
pub(crate) fn map_parallel<T, S, R, E>(
    items: &[T],
    threads: usize,
    init: impl Fn() -> S + Sync,
    work: impl Fn(&mut S, &T) -> Result<R, E> + Sync,
) -> Result<Vec<R>, E>
where
    T: Sync,
    R: Send,
    E: Send,
{
    let workers = threads.min(items.len()).max(1);
    if workers == 1 {
        let mut state = init();
        return items.iter().map(|item| work(&mut state, item)).collect();
    }
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let results: Mutex<Vec<Option<R>>> =
        Mutex::new(std::iter::repeat_with(|| None).take(items.len()).collect());
    let error: Mutex<Option<E>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                let mut state = init();
                while !failed.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else {
                        break;
                    };
                    match work(&mut state, item) {
                        Ok(r) => lock(&results)[i] = Some(r),
                        Err(e) => {
                            failed.store(true, Ordering::Relaxed);
                            lock(&error).get_or_insert(e);
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = error.into_inner().unwrap_or_else(|e| e.into_inner()) {
        return Err(e);
    }
    Ok(results
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        // Without an error every thread ran until the items ran out, so every slot is set.
        .map(|r| r.expect("every item was worked on"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::map_parallel;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn results_come_in_item_order_whatever_the_thread_count() {
        let items: Vec<u64> = (0..1000).collect();
        for threads in [0, 1, 2, 7] {
            let out = map_parallel(
                &items,
                threads,
                || 0u64,
                |seen, &x| {
                    *seen += 1;
                    Ok::<_, ()>(x * 3)
                },
            )
            .unwrap();
            assert_eq!(out, items.iter().map(|x| x * 3).collect::<Vec<_>>());
        }
        let none: Vec<u64> = Vec::new();
        assert!(map_parallel(&none, 4, || (), |_, &x| Ok::<_, ()>(x))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn the_first_error_stops_the_work_and_is_returned() {
        let items: Vec<u64> = (0..10_000).collect();
        for threads in [1, 2, 4] {
            let done = AtomicUsize::new(0);
            let out = map_parallel(
                &items,
                threads,
                || (),
                |_, &x| {
                    done.fetch_add(1, Ordering::Relaxed);
                    if x == 10 {
                        return Err(format!("item {x}"));
                    }
                    std::thread::sleep(std::time::Duration::from_micros(100));
                    Ok(x)
                },
            );
            assert_eq!(out, Err("item 10".to_string()));
            // Each thread finishes the item it had begun, then stops: far from all 10,000.
            let done = done.load(Ordering::Relaxed);
            assert!(done < 1_000, "{threads} threads worked on {done} items");
        }
    }

    #[test]
    fn each_thread_gets_its_own_state() {
        let items: Vec<u32> = (0..64).collect();
        let made = AtomicUsize::new(0);
        let out = map_parallel(
            &items,
            3,
            || {
                made.fetch_add(1, Ordering::Relaxed);
                Vec::new()
            },
            |mine: &mut Vec<u32>, &x| {
                mine.push(x);
                // A state shared between threads would see other threads' items here.
                Ok::<_, ()>(mine.windows(2).all(|w| w[0] < w[1]))
            },
        )
        .unwrap();
        assert!(out.into_iter().all(|ordered| ordered));
        assert!(made.load(Ordering::Relaxed) <= 3);
    }
}

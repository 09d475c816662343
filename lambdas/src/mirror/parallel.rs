//! Spreading thousands of small file-system calls (link, stat, unlink) over the cores: each is
//! a few microseconds of kernel time, and calls on different files run in parallel.

/// At most this many threads, whatever the core count.
const MAX_THREADS: usize = 4;

/// Calls `f` on consecutive chunks of `items`, one chunk per thread (the calling thread takes
/// the first), with no chunk smaller than `min_chunk`; returns the results in the items' order.
/// A panic in `f` is raised again here.
pub fn map_chunks<T: Sync, R: Send>(
    items: &[T],
    min_chunk: usize,
    f: impl Fn(&[T]) -> R + Sync,
) -> Vec<R> {
    let threads = (items.len() / min_chunk.max(1)).clamp(1, cores());
    let chunk = items.len().div_ceil(threads).max(1);
    let f = &f;
    std::thread::scope(|scope| {
        let mut chunks = items.chunks(chunk);
        let first = chunks.next().unwrap_or_default();
        let others: Vec<_> = chunks.map(|c| scope.spawn(move || f(c))).collect();
        let mut results = vec![f(first)];
        for handle in others {
            results.push(
                handle
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            );
        }
        results
    })
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_THREADS))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_keep_the_items_order() {
        let items: Vec<usize> = (0..1000).collect();
        let sums = map_chunks(&items, 10, |c| c.to_vec());
        assert_eq!(sums.concat(), items);
        assert!(sums.len() <= cores());
        assert_eq!(map_chunks(&items[..5], 10, |c| c.len()), vec![5]);
        assert_eq!(map_chunks(&[] as &[usize], 10, |c| c.len()), vec![0]);
    }
}

//! What `reset_query_list` does to a returned connection: whether skipping it is invisible,
//! and what it leaves of the named statements the connection remembers holding (under
//! transaction pooling they stay for the next client, see `statements`).

use super::slot::Slot;

/// At most this many named statements stay on one connection: past it, they are all
/// deallocated when the connection is returned (a program preparing without end must not
/// make every backend hold its statements forever).
pub const MAX_HELD_STATEMENTS: usize = 500;

/// The reset list only undoes session state (the default `ABORT;DISCARD ALL` and its
/// parts), so skipping it on a connection that holds none is invisible. A list with anything
/// else (a custom cleanup function, say) always runs.
pub fn resets_only_session_state(list: &[String]) -> bool {
    const STATE_RESETS: &[&str] = &[
        "abort",
        "discard all",
        "discard plans",
        "discard sequences",
        "discard temp",
        "discard temporary",
        "reset all",
        "deallocate all",
        "close all",
        "unlisten *",
        "set session authorization default",
        "reset session authorization",
        "select pg_advisory_unlock_all()",
    ];
    list.iter().all(|q| is_one_of(q, STATE_RESETS))
}

/// `q` is one of `list` up to case and runs of white space (no allocation: this runs at
/// every release of a connection).
fn is_one_of(q: &str, list: &[&str]) -> bool {
    list.iter().any(|r| {
        let mut a = q.split_whitespace();
        let mut b = r.split_whitespace();
        loop {
            match (a.next(), b.next()) {
                (None, None) => return true,
                (Some(x), Some(y)) if x.eq_ignore_ascii_case(y) => {}
                _ => return false,
            }
        }
    })
}

/// What running `list` did to named statements: `Some(true)` dropped them all,
/// `Some(false)` left them all, `None` cannot be told (a custom function).
fn drops_statements(list: &[String]) -> Option<bool> {
    const DROPS: &[&str] = &["discard all", "deallocate all", "deallocate prepare all"];
    if list.iter().any(|q| is_one_of(q, DROPS)) {
        Some(true)
    } else if resets_only_session_state(list) {
        Some(false)
    } else {
        None
    }
}

/// After `list` ran on `slot`: what it remembers holding becomes true again — forgotten if
/// the list dropped the statements, dropped here if the list may have (or if there are too
/// many to keep). False when the connection must be closed instead.
pub async fn settle_statements(slot: &mut Slot, list: &[String], max_len: u64) -> bool {
    match drops_statements(list) {
        Some(true) => slot.prepared.clear(),
        Some(false) if slot.prepared.len() <= MAX_HELD_STATEMENTS => {}
        _ if slot.prepared.is_empty() => {}
        _ => {
            let done = tokio::time::timeout(
                std::time::Duration::from_secs(10),
                slot.exec_silent("DEALLOCATE ALL", max_len),
            );
            if !matches!(done.await, Ok(Ok(None))) {
                return false;
            }
            slot.prepared.clear();
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_lists_say_what_they_do_to_statements() {
        let list = |s: &str| -> Vec<String> { s.split(';').map(str::to_string).collect() };
        let cases = [
            ("ABORT;DISCARD ALL", Some(true)),
            ("abort;  deallocate   all", Some(true)),
            ("ABORT;RESET ALL", Some(false)),
            ("DISCARD TEMP;DISCARD PLANS", Some(false)),
            ("SELECT my_cleanup()", None),
            ("SELECT my_cleanup();DISCARD ALL", Some(true)),
        ];
        for (l, want) in cases {
            assert_eq!(drops_statements(&list(l)), want, "{l}");
        }
        assert_eq!(drops_statements(&[]), Some(false));
    }
}

//! The statement tracker's and registry's bookkeeping, message by message.

use super::*;

fn parse(name: &str) -> Frame {
    protocol::parse_frame(name, "SELECT 1", &[])
}

fn close(name: &str) -> Frame {
    let mut b = BytesMut::new();
    protocol::close(&mut b, protocol::Target::Statement, name);
    Frame::new(tag::CLOSE, b[5..].to_vec())
}

fn sent(t: &mut Tracker, ops: Vec<Frame>) {
    for (i, f) in ops.into_iter().enumerate() {
        t.push(match f.tag {
            tag::PARSE => Pending::Parse {
                frame: f,
                generation: i as u64 + 1,
                injected: false,
                verdict: None,
            },
            _ => Pending::Close {
                frame: f,
                injected: false,
            },
        });
    }
    t.push(Pending::Sync);
}

#[test]
fn a_sent_reparse_counts_as_held_until_a_sync_point_follows_it() {
    let mut t = Tracker::default();
    let mut held = HashMap::default();
    held.insert("old".to_string(), 1);
    assert_eq!(t.holds("old", &held), Holds::Version(Some(1)));
    assert_eq!(t.holds("s1", &held), Holds::Version(None));
    t.push(Pending::Parse {
        frame: parse("s1"),
        generation: 7,
        injected: true,
        verdict: None,
    });
    // The rest of the unit: the re-Parse is there (or an error skips all of it).
    assert_eq!(t.holds("s1", &held), Holds::Version(Some(7)));
    t.push(Pending::Sync);
    // Past a sync point an error before it may have skipped it.
    assert_eq!(t.holds("s1", &held), Holds::Unsure);
    t.answered(btag::PARSE_COMPLETE, &mut held);
    t.synced();
    assert_eq!(t.holds("s1", &held), Holds::Version(Some(7)));
    // The client's own Parse leaves the name as PostgreSQL would.
    sent(&mut t, vec![parse("old")]);
    assert_eq!(t.holds("old", &held), Holds::AsClientLeftIt);
}

#[test]
fn batch_names_are_found_however_many() {
    let names: Vec<String> = (0..100).map(|i| format!("s{i}")).collect();
    let mut set = Names::default();
    for (i, n) in names.iter().enumerate() {
        set.insert(n);
        assert!(names[..=i].iter().all(|m| set.contains(m)), "{i}");
        assert!(!set.contains("other"));
    }
}

#[test]
fn a_parse_without_parse_complete_prepares_nothing() {
    let mut t = Tracker::default();
    let mut held = HashMap::default();
    // P(a) P(b) S: the server answered only the first (an error came after it).
    sent(&mut t, vec![parse("a"), parse("b")]);
    t.answered(btag::PARSE_COMPLETE, &mut held);
    t.synced();
    // The next request's Parse is not mistaken for the skipped one.
    sent(&mut t, vec![parse("c")]);
    t.answered(btag::PARSE_COMPLETE, &mut held);
    t.synced();
    let mut names: Vec<_> = held.keys().cloned().collect();
    names.sort();
    assert_eq!(names, ["a", "c"]);
    assert_eq!(t.settled.len(), 2);
}

#[test]
fn a_skipped_close_drops_nothing_an_answered_one_does() {
    let mut t = Tracker::default();
    let mut held = HashMap::default();
    sent(&mut t, vec![parse("a")]);
    t.answered(btag::PARSE_COMPLETE, &mut held);
    t.synced();
    sent(&mut t, vec![close("a")]);
    t.synced();
    assert!(held.contains_key("a"));
    sent(&mut t, vec![close("a")]);
    t.answered(btag::CLOSE_COMPLETE, &mut held);
    t.synced();
    assert!(held.is_empty());
    let mut reg = Registry::new();
    for op in t.settled.drain(..) {
        reg.settle(op);
    }
    assert!(reg.statements.is_empty());
}

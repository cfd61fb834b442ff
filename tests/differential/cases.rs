//! Differences the fuzzer found, kept as fixed sequences (pgproto scripts as it prints them)
//! and replayed before the random ones, against every proxy configuration.

pub const CASES: &[(&str, &str)] = &[
    (
        // A write batch ended by Flush goes to the primary; the Sync of the next (read) batch
        // must still reach the primary, or its implicit transaction never commits.
        "write_before_flush_then_read_before_sync",
        r#"
'P' "" "INSERT INTO acct VALUES (9, 90, 'x')" 0
'B' "" "" 0 0 0
'E' "" 0
'H'
'P' "" "SELECT count(*) FROM acct" 0
'B' "" "" 0 0 0
'E' "" 0
'S'
'Y'
'Q' "SELECT id, n FROM acct ORDER BY id"
'Y'
"#,
    ),
    (
        // PostgreSQL skips messages after an error until Sync: a Parse there creates nothing,
        // so a later Describe of that name is 26000.
        "parse_after_error_in_the_same_batch_is_discarded",
        r#"
'P' "" "SELEC 1" 0
'P' "s1" "SELECT 1" 0
'S'
'Y'
'D' 'S' "s1"
'S'
'Y'
"#,
    ),
];

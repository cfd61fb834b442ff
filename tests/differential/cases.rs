//! Differences the fuzzer found, kept as fixed sequences (pgproto scripts as it prints them)
//! and replayed before the random ones, each on a fresh proxy of every configuration.

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
    (
        // Found by the fuzzer: a named Parse ended by Flush, then Sync — the proxy answered
        // ReadyForQuery without the ParseComplete.
        "parse_flush_sync_answers_parse_complete",
        r#"
'P' "s3" "SELECT id, n, note FROM acct WHERE id = $1" 0
'H'
'S'
'Y'
"#,
    ),
    (
        // Found by the fuzzer: a read batch ended by Flush fails on the replica; PostgreSQL
        // skips everything up to Sync, the proxy lost the error, ran BEGIN on the primary
        // and left the replica's batch without its Sync.
        "error_before_flush_skips_the_next_batch_until_sync",
        r#"
'P' "s1" "SELECT count(*) FROM tmp" 0
'H'
'P' "s2" "BEGIN" 0
'B' "p3" "s2" 0 0 0
'E' "p3" 0
'S'
'Y'
'Q' "COPY log FROM STDIN"
'd' "1\t1\tcopied\n"
'c'
'Y'
"#,
    ),
    (
        // Found by the fuzzer: a second Parse of a name the session already prepared (a read,
        // on the replica) is 42P05 in PostgreSQL; the proxy sent the new text (a DELETE) to
        // the primary, which ran it.
        "parse_of_a_name_already_prepared_is_42p05",
        r#"
'P' "s1" "SELECT id, n, note FROM acct WHERE id = $1" 0
'S'
'Y'
'P' "s1" "DELETE FROM acct WHERE id = $1" 0
'B' "" "s1" 0 1 1 "3" 0
'E' "" 0
'S'
'Y'
"#,
    ),
    (
        // Nothing a session prepared may be left on a cached connection for the next one.
        "a_new_session_does_not_inherit_prepared_statements",
        r#"
'P' "s1" "SELECT 1" 0
'S'
'Y'
'P' "" "INSERT INTO log VALUES (7, 7, 'x')" 0
'B' "" "" 0 0 0
'E' "" 0
'B' "" "s1" 0 0 0
'E' "" 0
'S'
'Y'
'X'  # and log in again
'P' "s1" "SELECT 3" 0
'S'
'Y'
"#,
    ),
    (
        // Found by the fuzzer: Execute of a portal that does not exist, ended by Flush, is
        // 34000 and the rest up to Sync is skipped; the proxy answered the next Parse.
        "execute_of_a_missing_portal_before_flush_is_34000",
        r#"
'E' "" 0
'H'
'P' "s4" "SELECT id, n FROM acct ORDER BY id" 0
'S'
'Y'
"#,
    ),
    (
        // Found by the fuzzer (seed 0x5eed001c, shrunk by hand): Bind/Execute of a prepared
        // read ended by Flush, then a bare Sync — the proxy answered only ReadyForQuery.
        "bind_execute_flush_then_sync_answers_the_execute",
        r#"
'P' "s1" "SELECT id, n, note FROM acct WHERE id = $1" 0
'S'
'Y'
'B' "" "s1" 0 1 1 "2" 0
'E' "" 0
'H'
'S'
'Y'
"#,
    ),
    (
        // Seen by the fuzzer (seed 0x5eed0016 run after the cases on the same proxy): a new
        // session got 42P05 for its first statement, as if the DELETE the proxy let the
        // primary prepare under a name the session already had (case above) stayed on the
        // cached connection. Not reproduced alone yet; kept for the cross-session part.
        "a_statement_does_not_outlive_its_session",
        r#"
'P' "s1" "SELECT id, n, note FROM acct WHERE id = $1" 0
'S'
'Y'
'P' "s1" "DELETE FROM acct WHERE id = $1" 0
'B' "" "s1" 0 1 1 "3" 0
'E' "" 0
'S'
'Y'
'X'  # and log in again
'P' "s1" "SELECT id, n, note FROM acct WHERE id = $1" 0
'S'
'Y'
'B' "" "s1" 0 1 1 "2" 0
'E' "" 0
'H'
'S'
'Y'
"#,
    ),
];

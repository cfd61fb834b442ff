//! Catalog facts routing needs: is a function call a write (spec 5.7), is a relation
//! unlogged (spec 5.3 step 6)?
//!
//! With both function lists empty Pgpool-II asks the primary's `pg_proc` whether a function
//! of that name is VOLATILE, and so does the router: a built-in name never decides before the
//! catalog, because a user's overload (`public.abs(text)`) may be what the name resolves to.
//! The built-in tables below serve only where no catalog answer is at hand and a wrong
//! "safe" costs nothing but a reset skipped or kept (see [`builtin_volatility`]).

use regex::Regex;

/// Built-ins that are VOLATILE in `pg_proc`: a SELECT calling one goes to the primary.
const KNOWN_VOLATILE: &[&str] = &[
    "nextval",
    "setval",
    "currval",
    "lastval",
    "random",
    "random_normal",
    "setseed",
    "gen_random_uuid",
    "uuidv4",
    "uuidv7",
    "uuid_generate_v1",
    "uuid_generate_v1mc",
    "uuid_generate_v4",
    "pg_advisory_lock",
    "pg_advisory_lock_shared",
    "pg_advisory_unlock",
    "pg_advisory_unlock_shared",
    "pg_advisory_unlock_all",
    "pg_advisory_xact_lock",
    "pg_advisory_xact_lock_shared",
    "pg_try_advisory_lock",
    "pg_try_advisory_lock_shared",
    "pg_try_advisory_xact_lock",
    "pg_try_advisory_xact_lock_shared",
    "set_config",
    "pg_notify",
    "pg_sleep",
    "pg_sleep_for",
    "pg_sleep_until",
    "txid_current",
    "txid_current_if_assigned",
    "pg_current_xact_id",
    "pg_current_xact_id_if_assigned",
    "lo_import",
    "lo_export",
    "lo_create",
    "lo_creat",
    "lo_unlink",
    "lo_open",
    "lo_close",
    "lo_write",
    "lo_put",
    "lo_truncate",
    "lo_from_bytea",
    "lowrite",
    "loread",
    "dblink",
    "dblink_exec",
    "dblink_connect",
    "dblink_send_query",
    "pg_terminate_backend",
    "pg_cancel_backend",
    "clock_timestamp",
    "timeofday",
    "pg_reload_conf",
    "pg_rotate_logfile",
    "pg_switch_wal",
    "pg_create_restore_point",
    "pg_logical_emit_message",
    "pg_current_wal_lsn",
    "pg_current_wal_insert_lsn",
    "pg_current_wal_flush_lsn",
    "pg_create_physical_replication_slot",
    "pg_create_logical_replication_slot",
    "pg_drop_replication_slot",
    "pg_stat_reset",
    "pg_stat_reset_shared",
    "pg_stat_reset_single_table_counters",
    "pg_stat_statements_reset",
];

/// Built-ins (or syntax that looks like a call) known not to write.
const KNOWN_SAFE: &[&str] = &[
    "count",
    "sum",
    "avg",
    "min",
    "max",
    "coalesce",
    "nullif",
    "greatest",
    "least",
    "lower",
    "upper",
    "length",
    "char_length",
    "character_length",
    "octet_length",
    "abs",
    "round",
    "floor",
    "ceil",
    "ceiling",
    "trunc",
    "mod",
    "power",
    "sqrt",
    "to_char",
    "to_date",
    "to_timestamp",
    "to_number",
    "date_trunc",
    "date_part",
    "extract",
    "now",
    "current_timestamp",
    "current_date",
    "current_time",
    "localtime",
    "localtimestamp",
    "transaction_timestamp",
    "statement_timestamp",
    "current_setting",
    "version",
    "current_database",
    "current_schema",
    "current_user",
    "session_user",
    "array_agg",
    "string_agg",
    "json_agg",
    "jsonb_agg",
    "json_build_object",
    "jsonb_build_object",
    "json_build_array",
    "jsonb_build_array",
    "json_object_agg",
    "jsonb_object_agg",
    "to_json",
    "to_jsonb",
    "row_to_json",
    "jsonb_set",
    "jsonb_array_elements",
    "json_array_elements",
    "jsonb_each",
    "json_each",
    "jsonb_extract_path_text",
    "json_extract_path_text",
    "array_length",
    "array_to_string",
    "array_position",
    "cardinality",
    "unnest",
    "concat",
    "concat_ws",
    "substring",
    "substr",
    "replace",
    "trim",
    "btrim",
    "ltrim",
    "rtrim",
    "position",
    "strpos",
    "split_part",
    "left",
    "right",
    "lpad",
    "rpad",
    "md5",
    "initcap",
    "format",
    "regexp_replace",
    "regexp_matches",
    "quote_ident",
    "quote_literal",
    "row_number",
    "rank",
    "dense_rank",
    "percent_rank",
    "cume_dist",
    "ntile",
    "lag",
    "lead",
    "first_value",
    "last_value",
    "nth_value",
    "bool_and",
    "bool_or",
    "every",
    "generate_series",
    "percentile_cont",
    "percentile_disc",
    "mode",
    "stddev",
    "variance",
    "age",
    "make_date",
    "make_interval",
    "to_tsvector",
    "to_tsquery",
    "plainto_tsquery",
    "ts_rank",
    "exists",
];

fn builtin_name(func: &str) -> Option<&str> {
    match func.split_once('.') {
        None => Some(func),
        Some(("pg_catalog", rest)) if !rest.contains('.') => Some(rest),
        Some(_) => None,
    }
}

/// What the built-in tables say about `func` (lower-cased as classified): `Some(true)`
/// volatile, `Some(false)` safe, `None` not known here. Never a routing answer on its own:
/// a user overload of a "safe" name may write (routing asks the catalog).
pub fn builtin_volatility(func: &str) -> Option<bool> {
    let name = builtin_name(func)?;
    if KNOWN_VOLATILE.contains(&name) {
        Some(true)
    } else if KNOWN_SAFE.contains(&name) {
        Some(false)
    } else {
        None
    }
}

/// How the function lists decide (spec 5.7). `None`: both lists are empty, ask the catalog.
pub fn list_says_writing(
    func: &str,
    write_list: &[Regex],
    read_only_list: &[Regex],
) -> Option<bool> {
    let bare = func.rsplit('.').next().unwrap_or(func);
    let matches = |list: &[Regex]| list.iter().any(|r| r.is_match(func) || r.is_match(bare));
    if !read_only_list.is_empty() {
        return Some(!matches(read_only_list));
    }
    if !write_list.is_empty() {
        return Some(matches(write_list));
    }
    None
}

fn sql_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The query the session runs on the primary to learn whether `func` is VOLATILE; the answer
/// is one row with a count (see [`parse_volatility_answer`]). Same text as Pgpool-II's.
pub fn volatility_query(func: &str) -> String {
    let (schema, name) = match func.rsplit_once('.') {
        Some((s, n)) => (Some(s), n),
        None => (None, func),
    };
    let ns = match schema {
        Some(s) => format!("n.nspname = {}", sql_literal(s)),
        None => "n.nspname ~ '.*'".to_string(),
    };
    format!(
        "SELECT count(*) FROM pg_catalog.pg_proc AS p, pg_catalog.pg_namespace AS n \
         WHERE p.proname = {} AND n.oid = p.pronamespace AND {} AND p.provolatile = 'v'",
        sql_literal(name),
        ns
    )
}

/// The query the session runs on the primary to learn whether `relation` may be unlogged:
/// one row with the number of unlogged relations of that name in any schema (in the given
/// schema when qualified). Cacheable by name, whatever the session's `search_path`; a name
/// that is unlogged anywhere counts (conservative: it sends reads to the primary).
pub fn unlogged_query(relation: &str) -> String {
    let (schema, name) = match relation.rsplit_once('.') {
        Some((s, n)) => (Some(s), n),
        None => (None, relation),
    };
    let ns = match schema {
        Some(s) => format!(" AND n.nspname = {}", sql_literal(s)),
        None => String::new(),
    };
    format!(
        "SELECT count(*) FROM pg_catalog.pg_class AS c, pg_catalog.pg_namespace AS n \
         WHERE c.relname = {} AND n.oid = c.relnamespace{} AND c.relpersistence = 'u'",
        sql_literal(name),
        ns
    )
}

/// The query that says whether the built-in "safe" names may be trusted: one row with the
/// number of VOLATILE functions, in any schema, named like one of them (a user's overload
/// such as `public.abs(text)`; PostgreSQL's own are not VOLATILE). Non-zero: a call under a
/// safe name may do anything (see the session's reset skip).
pub fn overloaded_builtins_query() -> String {
    let names: Vec<String> = KNOWN_SAFE.iter().map(|n| sql_literal(n)).collect();
    format!(
        "SELECT count(*) FROM pg_catalog.pg_proc AS p WHERE p.provolatile = 'v' AND p.proname IN ({})",
        names.join(", ")
    )
}

/// `set_config` as written, bare or `pg_catalog.`-qualified.
pub fn is_set_config(func: &str) -> bool {
    matches!(func, "set_config" | "pg_catalog.set_config")
}

/// The count returned by [`volatility_query`] or [`unlogged_query`] → is the function a write? `None` if the text
/// is not a number.
pub fn parse_volatility_answer(count: &str) -> Option<bool> {
    count.trim().parse::<u64>().ok().map(|n| n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_shortcut_known_names_only() {
        let cases = [
            ("nextval", Some(true)),
            ("pg_catalog.set_config", Some(true)),
            ("count", Some(false)),
            ("pg_catalog.now", Some(false)),
            ("myschema.count", None),
            ("my_func", None),
        ];
        for (f, want) in cases {
            assert_eq!(builtin_volatility(f), want, "{f}");
        }
    }

    #[test]
    fn function_lists_follow_pgpool_precedence() {
        let re = |s: &str| Regex::new(&format!("^(?i:{s})$")).unwrap_or_else(|e| panic!("{e}"));
        let w = vec![re("my_writer"), re("nextval")];
        let r = vec![re("safe_.*")];
        type Case<'a> = (&'a str, &'a [Regex], &'a [Regex], Option<bool>);
        let cases: &[Case] = &[
            ("my_writer", &w, &[], Some(true)),
            ("public.my_writer", &w, &[], Some(true)),
            ("other", &w, &[], Some(false)),
            ("safe_x", &w, &r, Some(false)),
            ("my_writer", &w, &r, Some(true)),
            ("anything", &[], &[], None),
        ];
        for (f, wl, rl, want) in cases {
            assert_eq!(list_says_writing(f, wl, rl), *want, "{f}");
        }
    }

    #[test]
    fn volatility_query_matches_pgpool_text_and_escapes() {
        assert_eq!(
            volatility_query("f"),
            "SELECT count(*) FROM pg_catalog.pg_proc AS p, pg_catalog.pg_namespace AS n WHERE \
             p.proname = 'f' AND n.oid = p.pronamespace AND n.nspname ~ '.*' AND p.provolatile = 'v'"
        );
        assert!(volatility_query("s.f").contains("n.nspname = 's'"));
        assert!(volatility_query("o'f").contains("p.proname = 'o''f'"));
        assert_eq!(parse_volatility_answer("1"), Some(true));
        assert_eq!(parse_volatility_answer("0"), Some(false));
        assert_eq!(parse_volatility_answer("x"), None);
    }

    #[test]
    fn unlogged_query_looks_in_any_schema_unless_qualified() {
        assert_eq!(
            unlogged_query("t"),
            "SELECT count(*) FROM pg_catalog.pg_class AS c, pg_catalog.pg_namespace AS n WHERE \
             c.relname = 't' AND n.oid = c.relnamespace AND c.relpersistence = 'u'"
        );
        assert!(unlogged_query("s.t")
            .contains("c.relname = 't' AND n.oid = c.relnamespace AND n.nspname = 's'"));
        assert!(unlogged_query("o't").contains("c.relname = 'o''t'"));
    }
}

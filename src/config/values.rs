//! Value parsing and `ShowOption`-style formatting for each parameter type of Pgpool-II
//! (booleans, integers with units, enums, lists). A parse failure carries the text of the
//! accepted values, so the caller can name file, line and parameter around it.

use std::fmt::Write as _;

/// What a value should have looked like; the caller adds where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Invalid {
    pub accepted: String,
}

pub(crate) fn invalid(accepted: impl Into<String>) -> Invalid {
    Invalid {
        accepted: accepted.into(),
    }
}

/// The unit family and base unit of an integer parameter, as in PostgreSQL's GUC tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unit {
    None,
    Ms,
    S,
    Bytes,
}

const TIME_UNITS: &[(&str, f64)] = &[
    ("d", 86_400_000.0),
    ("h", 3_600_000.0),
    ("min", 60_000.0),
    ("s", 1000.0),
    ("ms", 1.0),
    ("us", 0.001),
];
const MEMORY_UNITS: &[(&str, f64)] = &[
    ("TB", 1_099_511_627_776.0),
    ("GB", 1_073_741_824.0),
    ("MB", 1_048_576.0),
    ("kB", 1024.0),
    ("B", 1.0),
];

impl Unit {
    /// Unit table and the size of this parameter's base unit in the table's terms.
    fn table(self) -> Option<(&'static [(&'static str, f64)], f64)> {
        match self {
            Unit::None => None,
            Unit::Ms => Some((TIME_UNITS, 1.0)),
            Unit::S => Some((TIME_UNITS, 1000.0)),
            Unit::Bytes => Some((MEMORY_UNITS, 1.0)),
        }
    }

    fn accepted_suffixes(self) -> &'static str {
        match self {
            Unit::None => "",
            Unit::Ms | Unit::S => "us, ms, s, min, h, d",
            Unit::Bytes => "B, kB, MB, GB, TB",
        }
    }
}

/// PostgreSQL's `parse_bool`: on/off/true/false/yes/no/1/0, case-insensitive, any
/// unambiguous prefix. Unlike Pgpool-II (which stores garbage as true) garbage is an error.
pub(crate) fn parse_bool(v: &str) -> Result<bool, Invalid> {
    let s = v.trim().to_ascii_lowercase();
    let is_prefix = |word: &str, min: usize| s.len() >= min && word.starts_with(&s);
    if is_prefix("true", 1) || is_prefix("yes", 1) || is_prefix("on", 2) || s == "1" {
        Ok(true)
    } else if is_prefix("false", 1) || is_prefix("no", 1) || is_prefix("off", 2) || s == "0" {
        Ok(false)
    } else {
        Err(invalid("on, off, true, false, yes, no, 1, 0"))
    }
}

pub(crate) fn show_bool(b: &bool) -> String {
    if *b { "on" } else { "off" }.to_string()
}

/// `strtol(v, 0)`-style integer (decimal, `0x` hex, leading-`0` octal; a decimal fraction
/// is accepted and rounded), optional whitespace, then an optional unit converted to the
/// parameter's base unit; range-checked.
pub(crate) fn parse_int<T: TryFrom<i64>>(
    v: &str,
    min: i64,
    max: i64,
    unit: Unit,
) -> Result<T, Invalid> {
    let accepted = || {
        let mut a = format!("an integer in {min} .. {max}");
        if unit != Unit::None {
            let _ = write!(a, ", optionally with a unit: {}", unit.accepted_suffixes());
        }
        invalid(a)
    };
    let s = v.trim();
    let split = s
        .char_indices()
        .find(|&(i, c)| {
            c.is_ascii_alphabetic() && !(i > 0 && (is_hex_prefix(s, i) || is_exponent(s, i)))
        })
        .map_or(s.len(), |(i, _)| i);
    let (number, suffix) = (s[..split].trim(), s[split..].trim());
    let mut value = parse_number(number).ok_or_else(accepted)?;
    if !suffix.is_empty() {
        let (table, base) = unit.table().ok_or_else(accepted)?;
        let factor = table
            .iter()
            .find(|(name, _)| *name == suffix)
            .map(|(_, f)| *f)
            .ok_or_else(accepted)?;
        value = value * factor / base;
    }
    let rounded = value.round_ties_even();
    if !rounded.is_finite() || rounded < min as f64 || rounded > max as f64 {
        return Err(accepted());
    }
    T::try_from(rounded as i64).map_err(|_| accepted())
}

/// True when the letters at `i` belong to a `0x` prefix or to the hex digits after it.
fn is_hex_prefix(s: &str, i: usize) -> bool {
    let body = s.trim_start_matches(['-', '+']);
    let start = s.len() - body.len();
    if !(body.starts_with("0x") || body.starts_with("0X")) {
        return false;
    }
    let hex_end = start
        + 2
        + body[2..]
            .bytes()
            .take_while(|b| b.is_ascii_hexdigit())
            .count();
    i > start && i < hex_end
}

/// True when the `e` at `i` is a decimal exponent (`1e5`), which `strtol` hands to `strtod`.
fn is_exponent(s: &str, i: usize) -> bool {
    let b = s.as_bytes();
    let prev_digit = i > 0 && b[i - 1].is_ascii_digit();
    let next = b.get(i + 1).copied();
    let next_digit = match next {
        Some(b'+' | b'-') => b.get(i + 2).is_some_and(u8::is_ascii_digit),
        Some(d) => d.is_ascii_digit(),
        None => false,
    };
    matches!(b[i], b'e' | b'E') && prev_digit && next_digit
}

fn parse_number(n: &str) -> Option<f64> {
    let (neg, body) = match n.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, n.strip_prefix('+').unwrap_or(n)),
    };
    let magnitude = if let Some(hex) = body.strip_prefix("0x").or(body.strip_prefix("0X")) {
        i64::from_str_radix(hex, 16).ok()? as f64
    } else if body.len() > 1 && body.starts_with('0') && body.bytes().all(|b| b.is_ascii_digit()) {
        i64::from_str_radix(&body[1..], 8).ok()? as f64
    } else if !body.is_empty() && body.bytes().all(|b| b.is_ascii_digit()) {
        body.parse::<i64>().ok()? as f64
    } else if body.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        body.parse::<f64>().ok()?
    } else {
        return None;
    };
    Some(if neg { -magnitude } else { magnitude })
}

/// `ShowOption`: the largest unit in which the value is exact (`300` s → `5min`); 0 and
/// unit-less parameters print as plain numbers.
pub(crate) fn show_int<T: Copy + Into<i128>>(x: &T, unit: Unit) -> String {
    let value: i128 = (*x).into();
    let Some((table, base)) = unit.table() else {
        return value.to_string();
    };
    if value == 0 {
        return "0".to_string();
    }
    for (name, factor) in table {
        if *factor < base {
            break;
        }
        let per_unit = (*factor / base) as i128;
        if per_unit > 0 && value % per_unit == 0 {
            return format!("{}{name}", value / per_unit);
        }
    }
    value.to_string()
}

/// A `double` parameter; unlike Pgpool-II's `atof`, trailing garbage is an error.
pub(crate) fn parse_real(v: &str, min: f64, max: f64) -> Result<f64, Invalid> {
    match v.trim().parse::<f64>() {
        Ok(x) if x.is_finite() && x >= min && x <= max => Ok(x),
        _ => Err(invalid(format!("a number in {min} .. {max}"))),
    }
}

pub(crate) fn show_real(x: &f64) -> String {
    format!("{x}")
}

pub(crate) fn parse_string(v: &str) -> Result<String, Invalid> {
    Ok(v.to_string())
}

pub(crate) fn show_string(s: &str) -> String {
    s.to_string()
}

/// A string that must be one of `choices` (case-insensitive); stored lower-cased unless
/// the choice itself has capitals (`TLSv1.2`).
pub(crate) fn parse_choice(v: &str, choices: &[&str]) -> Result<String, Invalid> {
    let t = v.trim();
    choices
        .iter()
        .find(|c| c.eq_ignore_ascii_case(t))
        .map(|c| c.to_string())
        .ok_or_else(|| invalid(choices.join(", ")))
}

/// Enum parameters: the first name of a variant is what `show` prints, later names are
/// accepted aliases (`on` for `catalog`).
pub(crate) trait ConfEnum: Copy + PartialEq + 'static {
    const NAMES: &'static [(&'static str, Self)];
}

pub(crate) fn parse_enum<E: ConfEnum>(v: &str) -> Result<E, Invalid> {
    let t = v.trim();
    E::NAMES
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(t))
        .map(|(_, e)| *e)
        .ok_or_else(|| {
            let names: Vec<&str> = E::NAMES.iter().map(|(n, _)| *n).collect();
            invalid(names.join(", "))
        })
}

pub(crate) fn show_enum<E: ConfEnum>(e: &E) -> String {
    E::NAMES
        .iter()
        .find(|(_, x)| x == e)
        .map_or_else(String::new, |(n, _)| n.to_string())
}

/// `strtok`-style list: split on `delim`, trim each item, drop empty items.
pub(crate) fn parse_list(v: &str, delim: &str) -> Vec<String> {
    v.split(delim)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// A `;`-separated list in which `\;` stands for a literal semicolon
/// (`primary_routing_query_pattern_list`).
pub(crate) fn parse_escaped_list(v: &str, delim: &str) -> Vec<String> {
    let mut items = Vec::new();
    let mut current = String::new();
    let mut rest = v;
    while let Some(c) = rest.chars().next() {
        if let Some(after) = rest.strip_prefix('\\').and_then(|r| r.strip_prefix(delim)) {
            current.push_str(delim);
            rest = after;
        } else if let Some(after) = rest.strip_prefix(delim) {
            items.push(std::mem::take(&mut current));
            rest = after;
        } else {
            current.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    items.push(current);
    items
        .into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans_accept_postgres_spellings_and_reject_garbage() {
        let cases: &[(&str, Option<bool>)] = &[
            ("on", Some(true)),
            ("ON", Some(true)),
            ("t", Some(true)),
            ("yes", Some(true)),
            ("y", Some(true)),
            ("1", Some(true)),
            ("off", Some(false)),
            ("of", Some(false)),
            ("fa", Some(false)),
            ("no", Some(false)),
            ("0", Some(false)),
            ("o", None),
            ("enabled", None),
            ("", None),
            ("2", None),
        ];
        for (input, expected) in cases {
            assert_eq!(parse_bool(input).ok(), *expected, "input {input:?}");
        }
    }

    #[test]
    fn integers_take_units_hex_octal_and_ranges() {
        let cases: &[(&str, Unit, Option<i64>)] = &[
            ("9999", Unit::None, Some(9999)),
            (" 42 ", Unit::None, Some(42)),
            ("0x20", Unit::None, Some(32)),
            ("010", Unit::None, Some(8)),
            ("1.6", Unit::None, Some(2)),
            ("1e3", Unit::None, Some(1000)),
            ("30s", Unit::S, Some(30)),
            ("5min", Unit::S, Some(300)),
            ("5 min", Unit::S, Some(300)),
            ("2h", Unit::S, Some(7200)),
            ("1d", Unit::S, Some(86_400)),
            ("1500ms", Unit::S, Some(2)),
            ("10s", Unit::Ms, Some(10_000)),
            ("64MB", Unit::Bytes, Some(64 << 20)),
            ("1kB", Unit::Bytes, Some(1024)),
            ("1GB", Unit::Bytes, Some(1 << 30)),
            ("5mb", Unit::Bytes, None),
            ("30s", Unit::None, None),
            ("30 parsecs", Unit::S, None),
            ("abc", Unit::None, None),
            ("", Unit::None, None),
            ("-1", Unit::None, None),
            ("2000000", Unit::None, None),
        ];
        for (input, unit, expected) in cases {
            let got = parse_int::<i64>(input, 0, 1_000_000_000_000, *unit).ok();
            let got = got.filter(|v| *unit != Unit::None || *v <= 1_000_000);
            assert_eq!(got, *expected, "input {input:?} unit {unit:?}");
        }
    }

    #[test]
    fn int_errors_name_range_and_units() {
        let err = parse_int::<u16>("70000", 1024, 65535, Unit::None).err();
        assert_eq!(
            err.map(|e| e.accepted),
            Some("an integer in 1024 .. 65535".into())
        );
        let err = parse_int::<u64>("5 parsecs", 0, 100, Unit::S).err();
        let text = err.map(|e| e.accepted).unwrap_or_default();
        assert!(text.contains("min"), "{text}");
    }

    #[test]
    fn show_uses_the_largest_exact_unit() {
        let cases: &[(u64, Unit, &str)] = &[
            (300, Unit::S, "5min"),
            (90, Unit::S, "90s"),
            (0, Unit::S, "0"),
            (86_400, Unit::S, "1d"),
            (10_000, Unit::Ms, "10s"),
            (1500, Unit::Ms, "1500ms"),
            (1 << 30, Unit::Bytes, "1GB"),
            (65_536, Unit::Bytes, "64kB"),
            (1000, Unit::Bytes, "1000B"),
            (32, Unit::None, "32"),
        ];
        for (value, unit, expected) in cases {
            assert_eq!(show_int(value, *unit), *expected, "{value} {unit:?}");
        }
    }

    #[test]
    fn lists_split_trim_and_honour_escaped_semicolons() {
        assert_eq!(parse_list(" a, b ,,c ", ","), ["a", "b", "c"]);
        assert_eq!(parse_list("", ","), Vec::<String>::new());
        assert_eq!(
            parse_escaped_list("SELECT 1\\; SELECT 2;^LOCK.*", ";"),
            ["SELECT 1; SELECT 2", "^LOCK.*"]
        );
    }

    #[test]
    fn choices_are_case_insensitive_and_list_alternatives() {
        assert_eq!(
            parse_choice("WARNING", &["warning", "error"]),
            Ok("warning".into())
        );
        assert_eq!(
            parse_choice("loud", &["warning", "error"]).map_err(|e| e.accepted),
            Err("warning, error".into())
        );
    }
}

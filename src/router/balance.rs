//! The session's load-balance node (spec 5.1): redirect preference lists, then a weighted
//! random choice. Pure: the random number comes in as an argument.

use super::config::{RedirectNode, RedirectRule, RouterConfig};

/// How the load-balance node was chosen (becomes the reason of balanced reads).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeChoice {
    /// A redirect preference rule picked it.
    Redirect,
    /// The weighted random choice picked it.
    Weight,
}

/// The first rule of each list that matches; app name beats database beats user.
fn redirect_rule<'a>(
    cfg: &'a RouterConfig,
    user: &str,
    database: &str,
    app: &str,
) -> Option<&'a RedirectRule> {
    let first = |rules: &'a [RedirectRule], s: &str| rules.iter().find(|r| r.pattern.is_match(s));
    first(&cfg.app_name_redirect, app)
        .or_else(|| first(&cfg.database_redirect, database))
        .or_else(|| first(&cfg.user_redirect, user))
}

/// Pick the session's node. `r` is uniform in `[0, 1)`. Pgpool-II draws a second random
/// number for the weighted step after a redirect rule declined; we rescale the part of `r`
/// the rule did not use, which is uniform again and keeps this a function of one number.
pub fn choose_node(
    cfg: &RouterConfig,
    user: &str,
    database: &str,
    app: &str,
    r: f64,
    healthy: &[bool],
) -> (usize, NodeChoice) {
    let r = if r.is_finite() {
        r.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let usable = |n: usize| healthy.get(n).copied().unwrap_or(false);
    let mut excluded = None;
    let mut standbys_only = false;
    let mut r2 = r;
    if let Some(rule) = redirect_rule(cfg, user, database, app) {
        let ratio = rule.ratio;
        match rule.node {
            RedirectNode::Id(n) if r <= ratio && usable(n) => return (n, NodeChoice::Redirect),
            RedirectNode::Primary if r <= ratio && usable(cfg.primary_node) => {
                return (cfg.primary_node, NodeChoice::Redirect)
            }
            RedirectNode::Standby if r > ratio => return (cfg.primary_node, NodeChoice::Redirect),
            RedirectNode::Standby => {
                standbys_only = true;
                r2 = if ratio > 0.0 { r / ratio } else { 0.0 };
            }
            RedirectNode::Id(n) => {
                excluded = Some(n);
                r2 = rescale_above(r, ratio);
            }
            RedirectNode::Primary => r2 = rescale_above(r, ratio),
        }
    }
    let eligible =
        |n: usize| usable(n) && Some(n) != excluded && !(standbys_only && n == cfg.primary_node);
    match weighted_pick(&cfg.weights, r2, eligible) {
        Some(n) => (
            n,
            if standbys_only {
                NodeChoice::Redirect
            } else {
                NodeChoice::Weight
            },
        ),
        None => (cfg.primary_node, NodeChoice::Weight),
    }
}

fn rescale_above(r: f64, ratio: f64) -> f64 {
    if ratio < 1.0 {
        ((r - ratio) / (1.0 - ratio)).clamp(0.0, 1.0)
    } else {
        0.0
    }
}

/// Weighted choice among eligible nodes with weight > 0: `P(i) = w_i / Σw`.
pub fn weighted_pick(weights: &[f64], r: f64, eligible: impl Fn(usize) -> bool) -> Option<usize> {
    let w = |i: usize, x: f64| {
        if eligible(i) && x.is_finite() && x > 0.0 {
            x
        } else {
            0.0
        }
    };
    let total: f64 = weights.iter().enumerate().map(|(i, &x)| w(i, x)).sum();
    if total <= 0.0 {
        return None;
    }
    let target = r * total;
    let mut last = None;
    let mut sum = 0.0;
    for (i, &x) in weights.iter().enumerate() {
        let wi = w(i, x);
        if wi <= 0.0 {
            continue;
        }
        sum += wi;
        last = Some(i);
        if target < sum {
            return Some(i);
        }
    }
    last // r == 1.0 or rounding: the last pickable node
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::anchored_regex;
    use crate::router::config::RedirectRule;

    fn cfg(weights: &[f64]) -> RouterConfig {
        RouterConfig::new(weights.to_vec())
    }

    fn rule(p: &str, node: RedirectNode, ratio: f64) -> RedirectRule {
        RedirectRule {
            pattern: anchored_regex(p).unwrap_or_else(|e| panic!("{e}")),
            node,
            ratio,
        }
    }

    const RS: [f64; 7] = [0.0, 0.1, 0.3, 0.5, 0.7, 0.99, 0.999_999];

    #[test]
    fn weights_decide_the_node() {
        let both = [true, true];
        let cases: &[(&[f64], &[bool], &[usize])] = &[
            (&[0.0, 1.0], &both, &[1; 7]),
            (&[1.0, 0.0], &both, &[0; 7]),
            (&[1.0, 1.0], &both, &[0, 0, 0, 1, 1, 1, 1]),
            (&[1.0, 3.0], &both, &[0, 0, 1, 1, 1, 1, 1]),
            (&[0.0, 1.0], &[true, false], &[0; 7]),
            (&[0.0, 0.0], &both, &[0; 7]),
        ];
        for (weights, healthy, want) in cases {
            let got: Vec<usize> = RS
                .iter()
                .map(|&r| choose_node(&cfg(weights), "u", "d", "a", r, healthy).0)
                .collect();
            assert_eq!(&got, want, "weights {weights:?} healthy {healthy:?}");
        }
    }

    #[test]
    fn redirect_lists_override_in_order_app_database_user() {
        let mut c = cfg(&[1.0, 1.0]);
        c.user_redirect = vec![rule("alice", RedirectNode::Id(1), 1.0)];
        c.database_redirect = vec![rule("reports", RedirectNode::Standby, 1.0)];
        c.app_name_redirect = vec![rule("batch", RedirectNode::Primary, 1.0)];
        let h = [true, true];
        let cases = [
            ("alice", "db", "psql", 0.5, 1, NodeChoice::Redirect),
            ("bob", "db", "psql", 0.2, 0, NodeChoice::Weight),
            ("bob", "reports", "psql", 0.5, 1, NodeChoice::Redirect),
            ("alice", "reports", "batch", 0.5, 0, NodeChoice::Redirect),
        ];
        for (u, d, a, r, node, how) in cases {
            assert_eq!(choose_node(&c, u, d, a, r, &h), (node, how), "{u} {d} {a}");
        }
    }

    #[test]
    fn redirect_ratio_splits_by_random_number() {
        let mut c = cfg(&[1.0, 1.0]);
        c.database_redirect = vec![rule("d", RedirectNode::Id(1), 0.3)];
        let h = [true, true];
        // r <= 0.3 → node 1 by redirect; else node 1 is excluded → node 0.
        assert_eq!(
            choose_node(&c, "u", "d", "a", 0.2, &h),
            (1, NodeChoice::Redirect)
        );
        assert_eq!(
            choose_node(&c, "u", "d", "a", 0.9, &h),
            (0, NodeChoice::Weight)
        );
        c.database_redirect = vec![rule("d", RedirectNode::Standby, 0.3)];
        assert_eq!(
            choose_node(&c, "u", "d", "a", 0.9, &h),
            (0, NodeChoice::Redirect)
        );
        assert_eq!(
            choose_node(&c, "u", "d", "a", 0.1, &h),
            (1, NodeChoice::Redirect)
        );
    }
}

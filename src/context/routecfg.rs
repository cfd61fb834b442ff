//! Builds the pure router's settings from the configuration.

use crate::config::{self, Config};
use crate::router::{self, compile_anchored, RouterConfig};

fn redirect(rules: &[config::RedirectRule]) -> Vec<router::RedirectRule> {
    rules
        .iter()
        .map(|r| router::RedirectRule {
            pattern: r.pattern.clone(),
            node: match r.node {
                config::RedirectNode::Id(n) => router::RedirectNode::Id(n),
                config::RedirectNode::Primary => router::RedirectNode::Primary,
                config::RedirectNode::Standby => router::RedirectNode::Standby,
            },
            ratio: r.ratio,
        })
        .collect()
}

fn regexes(list: &[String]) -> Vec<regex::Regex> {
    // Patterns were validated at load; one that still fails to compile is skipped.
    list.iter()
        .filter_map(|p| compile_anchored(p).ok())
        .collect()
}

pub fn router_config(cfg: &Config) -> RouterConfig {
    let weights = cfg.backends.iter().map(|b| b.weight).collect();
    let mut rc = RouterConfig::new(weights);
    rc.load_balance_mode = cfg.load_balance_mode;
    rc.statement_level_load_balance = cfg.statement_level_load_balance;
    rc.disable_lb_on_write = match cfg.disable_load_balance_on_write {
        config::DisableLbOnWrite::Off => router::DisableLbOnWrite::Off,
        config::DisableLbOnWrite::Transaction => router::DisableLbOnWrite::Transaction,
        config::DisableLbOnWrite::TransTransaction => router::DisableLbOnWrite::TransTransaction,
        config::DisableLbOnWrite::Always => router::DisableLbOnWrite::Always,
        config::DisableLbOnWrite::DmlAdaptive => router::DisableLbOnWrite::DmlAdaptive,
    };
    rc.write_function_list = regexes(&cfg.write_function_list);
    rc.read_only_function_list = regexes(&cfg.read_only_function_list);
    rc.primary_routing_query_patterns = regexes(&cfg.primary_routing_query_pattern_list);
    rc.check_unlogged_table = cfg.check_unlogged_table;
    rc.user_redirect = redirect(&cfg.user_redirect_preference_list);
    rc.database_redirect = redirect(&cfg.database_redirect_preference_list);
    rc.app_name_redirect = redirect(&cfg.app_name_redirect_preference_list);
    rc
}

//! Statement classification and the load-balancing policy. Pure: no I/O.
//!
//! [`Classifier`] turns query text into cached static facts ([`Statement`]);
//! [`SessionRouting`] combines them with the session's transaction state and the
//! [`RouterConfig`] into a [`Decision`] (target + reason). The session owns the I/O: it runs
//! [`volatility_query`] and [`unlogged_query`] when asked, and reports each outcome through
//! [`SessionRouting::after`].

mod balance;
mod cache;
mod classify;
mod config;
mod cursor;
mod dml;
mod fast;
mod functions;
mod lexer;
mod outlives;
mod parse;
mod policy;
mod reason;
mod select;
mod shape;
mod statement;
mod stmt_class;
mod txn;

#[cfg(test)]
mod cache_tests;
#[cfg(test)]
mod facts_tests;
#[cfg(test)]
mod lexer_equivalence_tests;
#[cfg(test)]
mod route_tests;
#[cfg(test)]
mod state_tests;

pub use balance::{choose_node, weighted_pick, NodeChoice};
pub use cache::Classifier;
pub use classify::classify_uncached;
pub use config::{
    compile_anchored, compile_function_list, compile_pattern_list, DisableLbOnWrite, RedirectNode,
    RedirectRule, RouterConfig, RouterError,
};
pub use functions::{
    builtin_volatility, is_set_config, list_says_writing, overloaded_builtins_query,
    parse_volatility_answer, unlogged_query, volatility_query,
};
pub use lexer::passes_first_char_rule;
pub use policy::{
    is_system_relation, Catalog, CatalogKey, Decision, RouteResult, SessionRouting, Target,
};
pub use reason::Reason;
pub use statement::{
    AdminCommand, ClassifyOptions, Isolation, Outlives, PrimaryCause, SetEffect, Statement,
    StmtKind,
};
pub use stmt_class::StmtClass;

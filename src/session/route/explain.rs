//! `PGPOOL EXPLAIN ROUTE`: the session's routing asked without routing anything.

use super::{Questions, Router};
use crate::context::Context;
use crate::router::{Reason, RouteResult, Target as PolicyTarget};

impl Router {
    /// Catalog facts `PGPOOL EXPLAIN ROUTE <sql>` needs looked up first.
    pub fn explain_lookups(&self, ctx: &Context, sql: &str) -> Questions {
        if self.open_unit.is_some() {
            // The node is set, and a look-up would run inside the client's open unit.
            return Questions::default();
        }
        let stmt = self.classifier.classify_for(sql, &self.rcfg);
        match self
            .policy
            .route(&stmt, &self.rcfg, &|k| ctx.catalog.get(&self.database, k))
        {
            RouteResult::NeedCatalog {
                functions,
                relations,
            } => Questions {
                functions,
                relations,
            },
            RouteResult::Decided(_) => Questions::default(),
        }
    }

    /// Where `sql` would go now and why (`PGPOOL EXPLAIN ROUTE`); changes no state.
    pub fn explain(&self, ctx: &Context, sql: &str, in_txn: bool) -> crate::admin::Explained {
        let stmt = self.classifier.classify_for(sql, &self.rcfg);
        let (decision, reason) = match self
            .policy
            .route(&stmt, &self.rcfg, &|k| ctx.catalog.get(&self.database, k))
        {
            RouteResult::Decided(d) => (d.target, d.reason),
            RouteResult::NeedCatalog { .. } => (PolicyTarget::Primary, Reason::VolatilityUnknown),
        };
        let (node, mut reason) = self.final_node(ctx, decision, in_txn, reason, &[stmt]);
        if node != self.primary() && ctx.config().read_your_writes && self.ryw.pending(node) {
            reason = Reason::ReadYourWritesCheck;
        }
        crate::admin::Explained { node, reason }
    }
}

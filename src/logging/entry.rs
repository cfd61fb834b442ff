//! A layer wrapper that leaves out span entry and exit.
//!
//! A session's future runs inside its span, so every poll enters and leaves it: with the
//! reloadable filter and format layers that is two read locks and a map look-up per layer,
//! twice per poll, on the relay's hot path. Neither layer needs them: the format reads the
//! current span from the registry (which keeps its own stack), and a level filter only
//! needs span entry for span-scoped directives, which only `PGPOOL_LOG` can write.

use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// `L` without `on_enter`/`on_exit` when `skip` (everything else is forwarded).
pub(super) struct SkipEntry<L> {
    pub inner: L,
    pub skip: bool,
}

impl<S: Subscriber, L: Layer<S>> Layer<S> for SkipEntry<L> {
    fn on_register_dispatch(&self, subscriber: &tracing::Dispatch) {
        self.inner.on_register_dispatch(subscriber)
    }
    fn on_layer(&mut self, subscriber: &mut S) {
        self.inner.on_layer(subscriber)
    }
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        self.inner.register_callsite(metadata)
    }
    fn enabled(&self, metadata: &Metadata<'_>, ctx: Context<'_, S>) -> bool {
        self.inner.enabled(metadata, ctx)
    }
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        self.inner.on_new_span(attrs, id, ctx)
    }
    fn max_level_hint(&self) -> Option<LevelFilter> {
        self.inner.max_level_hint()
    }
    fn on_record(&self, span: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        self.inner.on_record(span, values, ctx)
    }
    fn on_follows_from(&self, span: &Id, follows: &Id, ctx: Context<'_, S>) {
        self.inner.on_follows_from(span, follows, ctx)
    }
    fn event_enabled(&self, event: &Event<'_>, ctx: Context<'_, S>) -> bool {
        self.inner.event_enabled(event, ctx)
    }
    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        self.inner.on_event(event, ctx)
    }
    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        if !self.skip {
            self.inner.on_enter(id, ctx)
        }
    }
    fn on_exit(&self, id: &Id, ctx: Context<'_, S>) {
        if !self.skip {
            self.inner.on_exit(id, ctx)
        }
    }
    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        self.inner.on_close(id, ctx)
    }
    fn on_id_change(&self, old: &Id, new: &Id, ctx: Context<'_, S>) {
        self.inner.on_id_change(old, new, ctx)
    }
}

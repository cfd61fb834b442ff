//! The client's named statements as PostgreSQL sees them. A statement exists from the
//! server's ParseComplete to its CloseComplete: a Parse the server skipped (it came after an
//! error, before the Sync) or rejected created nothing, and a skipped Close dropped nothing.
//! The session keeps each statement's Parse so a backend that lacks it gets it first.
//! A statement is known by its definition (text, parameter types, the session's settings),
//! the same way in every session: under transaction pooling a backend connection keeps its
//! statements from one client to the next, and a client whose statement a connection
//! already holds under the same name with the same definition uses it as it is.

use std::collections::VecDeque;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::{Arc, OnceLock};

use bytes::BytesMut;
use foldhash::{HashMap, HashSet};

use super::slot::Slot;
use crate::protocol::{self, btag, decode_bind, decode_parse, decode_target, tag, Frame};
use crate::router::Statement;

/// A statement the server prepared for the client.
struct Prepared {
    generation: u64,
    parse: Frame,
}

/// The session's statements, by name (the unnamed one too).
#[derive(Default)]
pub struct Registry {
    statements: HashMap<String, Prepared>,
    /// The session settings (replayed SETs) in force: a statement prepared under other
    /// settings (a `search_path`) may mean something else, so they are part of its key.
    settings: u64,
}

/// The key of a statement's definition: its Parse without the name (text, parameter
/// types) and the settings it was prepared under. The same in every session of the
/// process, so connections carry statements between clients; keyed with random SipHash
/// keys so that no client can make its statement pass for another's.
pub fn definition(parse_body: &[u8], settings: u64) -> u64 {
    let name_end = parse_body.iter().position(|&b| b == 0).map_or(0, |i| i + 1);
    let mut h = keyed_hasher();
    h.write(&parse_body[name_end..]);
    h.write_u64(settings);
    h.finish()
}

fn keyed_hasher() -> std::hash::DefaultHasher {
    static KEYS: OnceLock<RandomState> = OnceLock::new();
    KEYS.get_or_init(RandomState::new).build_hasher()
}

/// A message sent to one backend whose effect on statements waits for the server's answer;
/// `Sync` stands for every ReadyForQuery due (what is still unanswered then was skipped).
pub enum Pending {
    /// `injected`: the proxy's own re-prepare; it changes what the backend holds, not what
    /// the client has.
    /// `verdict`: how the router classified a client's Parse; it is the name's verdict
    /// once the server accepted the Parse.
    Parse {
        frame: Frame,
        generation: u64,
        injected: bool,
        verdict: Option<Arc<Statement>>,
    },
    Close {
        frame: Frame,
        injected: bool,
    },
    Sync,
}

/// What a backend holds (or will, once it answered what was sent) under a statement name.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Holds {
    /// The statement of that generation, or none.
    Version(Option<u64>),
    /// What the client's own pending Parse or Close of the name leaves.
    AsClientLeftIt,
    /// The proxy's own Parse or Close of it may have been skipped by an error.
    Unsure,
}

/// What one backend was asked to prepare or close and has not answered yet, in order, and
/// what it answered since the session last looked.
#[derive(Default)]
pub struct Tracker {
    pending: VecDeque<Pending>,
    /// Client Parses and Closes the server carried out, for the session's registry.
    pub settled: Vec<Pending>,
}

impl Tracker {
    /// The backend answered with `tag`: a ParseComplete or CloseComplete settles the oldest
    /// Parse or Close still pending; `prepared` (what the backend holds) follows. True when
    /// that Parse or Close was the proxy's own: its answer is not the client's.
    pub fn answered(&mut self, tag: u8, prepared: &mut HashMap<String, u64>) -> bool {
        let parse = match tag {
            btag::PARSE_COMPLETE => true,
            btag::CLOSE_COMPLETE => false,
            _ => return false,
        };
        while let Some(front) = self.pending.front() {
            let matches = match front {
                Pending::Sync => return false,
                Pending::Parse { .. } => parse,
                Pending::Close { .. } => !parse,
            };
            let Some(op) = self.pending.pop_front() else {
                return false;
            };
            if !matches {
                continue; // not answered in order: the server skipped it
            }
            let client_op = match &op {
                Pending::Parse {
                    frame,
                    generation,
                    injected,
                    ..
                } => {
                    if let Ok(p) = decode_parse(&frame.body) {
                        prepared.insert(p.name.to_string(), *generation);
                    }
                    !injected
                }
                Pending::Close { frame, injected } => {
                    if let Ok((protocol::Target::Statement, name)) =
                        decode_target(&frame.body, "Close")
                    {
                        prepared.remove(name);
                    }
                    !injected
                }
                Pending::Sync => false,
            };
            if client_op {
                self.settled.push(op);
            }
            return !client_op;
        }
        false
    }

    /// A ReadyForQuery: what its request asked and got no answer for never happened.
    pub fn synced(&mut self) {
        while let Some(op) = self.pending.pop_front() {
            if let Pending::Sync = op {
                return;
            }
        }
    }

    /// What this backend will hold under `name` once it has answered what was sent: the
    /// statements it confirmed, changed by the newest Parse or Close of the name still
    /// pending. An injected one counts as carried out while no sync point follows it (were it
    /// skipped, an error came first and the server skips everything after it up to that sync
    /// point); past a sync point it may have been skipped.
    pub fn holds(&self, name: &str, prepared: &HashMap<String, u64>) -> Holds {
        let mut sync_after = false;
        for op in self.pending.iter().rev() {
            let (of_name, generation, injected) = match op {
                Pending::Sync => {
                    sync_after = true;
                    continue;
                }
                Pending::Parse {
                    frame,
                    generation,
                    injected,
                    ..
                } => (
                    decode_parse(&frame.body).is_ok_and(|p| p.name == name),
                    Some(*generation),
                    *injected,
                ),
                Pending::Close { frame, injected } => (
                    matches!(decode_target(&frame.body, "Close"),
                        Ok((protocol::Target::Statement, n)) if n == name),
                    None,
                    *injected,
                ),
            };
            if !of_name {
                continue;
            }
            return match (injected, sync_after) {
                // Whatever the client's message does there, PostgreSQL does the same.
                (false, _) => Holds::AsClientLeftIt,
                (true, false) => Holds::Version(generation),
                (true, true) => Holds::Unsure,
            };
        }
        Holds::Version(prepared.get(name).copied())
    }

    /// Parses, Closes and sync points sent and not answered yet.
    pub fn pending_ops(&self) -> usize {
        self.pending.len()
    }

    fn push(&mut self, op: Pending) {
        self.pending.push_back(op);
    }
}

impl Registry {
    pub fn new() -> Registry {
        Registry::default()
    }

    /// The session's settings changed to those `log` replays: statements parsed from now
    /// on are told apart from the same text parsed before.
    pub fn settings_changed(&mut self, log: &[String]) {
        self.settings = match log {
            [] => 0,
            log => {
                let mut h = keyed_hasher();
                for sql in log {
                    h.write(sql.as_bytes());
                    h.write_u8(0);
                }
                h.finish()
            }
        };
    }

    /// Whether the server prepared a statement `name` for the client (and has not closed it).
    pub fn contains(&self, name: &str) -> bool {
        self.statements.contains_key(name)
    }

    /// Transaction pooling: a batch of only Parses and Closes (and its Sync), sent while the
    /// session holds no backend, is carried out by the proxy as if a backend had: the
    /// statements go to whichever backend runs them later. A client that prepares
    /// synchronously while its other connections hold transactions (pgbench -M prepared)
    /// then needs no backend for it; an error in the text shows at the first execution.
    /// The operations to settle, or None when a backend must judge the batch (a Parse of a
    /// name that exists, or of the unnamed statement).
    pub fn carry_out_locally(
        &mut self,
        frames: &[Frame],
        classify: impl Fn(&str) -> Arc<Statement>,
    ) -> Option<Vec<Pending>> {
        let mut names: smallvec::SmallVec<[&str; 8]> = Default::default();
        for f in frames {
            match f.tag {
                tag::PARSE => match decode_parse(&f.body) {
                    Ok(p) if !p.name.is_empty() && !self.contains(p.name) => {
                        if names.contains(&p.name) {
                            return None;
                        }
                        names.push(p.name);
                    }
                    _ => return None,
                },
                tag::CLOSE | tag::SYNC => {}
                _ => return None,
            }
        }
        let mut ops = Vec::with_capacity(frames.len());
        for f in frames {
            match f.tag {
                tag::PARSE => {
                    let verdict = decode_parse(&f.body).ok().map(|p| classify(p.query));
                    ops.push(Pending::Parse {
                        frame: f.clone(),
                        generation: definition(&f.body, self.settings),
                        injected: false,
                        verdict,
                    });
                }
                tag::CLOSE => ops.push(Pending::Close {
                    frame: f.clone(),
                    injected: false,
                }),
                _ => {}
            }
        }
        Some(ops)
    }

    /// Applies what a backend carried out (see [`Tracker::settled`]).
    pub fn settle(&mut self, op: Pending) {
        match op {
            Pending::Parse {
                frame, generation, ..
            } => {
                if let Ok(p) = decode_parse(&frame.body) {
                    let name = p.name.to_string();
                    self.statements.insert(
                        name,
                        Prepared {
                            generation,
                            parse: frame,
                        },
                    );
                }
            }
            Pending::Close { frame, .. } => {
                if let Ok((protocol::Target::Statement, name)) = decode_target(&frame.body, "Close")
                {
                    self.statements.remove(name);
                }
            }
            Pending::Sync => {}
        }
    }

    /// A request ended by `ready` sync points went to `slot`: what is still unanswered of it
    /// when those arrive was skipped.
    pub fn track_syncs(&mut self, ready: usize, slot: &mut Slot) {
        for _ in 0..ready {
            slot.stmts.push(Pending::Sync);
        }
    }

    /// Writes an extended batch to `slot`. A statement the batch binds or describes but that
    /// backend has not prepared (or holds an older version of) is prepared right before the
    /// message that needs it — so an error earlier in the batch skips it, as PostgreSQL
    /// skips the client's own messages — and the answers to those injected messages are
    /// dropped. Every Parse and Close, the client's and the proxy's, waits for its answer
    /// in wire order. `verdicts`: the router's, one per client Parse. Returns how many
    /// messages the proxy added inside the batch (those synced on their own ahead of it
    /// answer before it).
    pub fn write_batch(
        &mut self,
        frames: &[Frame],
        slot: &mut Slot,
        verdicts: Vec<Arc<Statement>>,
    ) -> usize {
        let mut verdicts = verdicts.into_iter();
        let mut inject = BytesMut::new();
        let mut injected = 0;
        let mut parsed_here = Names::default();
        // Nothing is open there: re-prepares ahead of the first message go in a unit of their
        // own. Inside the client's implicit transaction a Parse would take its snapshot, and a
        // BEGIN ISOLATION LEVEL later in the batch would then fail (25001) where PostgreSQL,
        // which holds the statement already, accepts it.
        let mut first = slot.at_rest();
        for f in frames {
            let before = slot.stmts.pending_ops();
            self.inject_needed(f, slot, &mut parsed_here, &mut inject);
            let added = slot.stmts.pending_ops() - before;
            if std::mem::take(&mut first) && added > 0 {
                protocol::sync(&mut inject);
                slot.stmts.push(Pending::Sync);
                slot.presynced();
            } else {
                injected += added;
            }
            slot.bout.extend_from_slice(&inject);
            inject.clear();
            match f.tag {
                tag::PARSE => {
                    let generation = definition(&f.body, self.settings);
                    slot.stmts.push(Pending::Parse {
                        frame: f.clone(),
                        generation,
                        injected: false,
                        verdict: verdicts.next(),
                    });
                }
                tag::CLOSE => slot.stmts.push(Pending::Close {
                    frame: f.clone(),
                    injected: false,
                }),
                _ => {}
            }
            f.encode(&mut slot.bout);
        }
        injected
    }

    /// What `f` needs on `slot` first (see [`Registry::write_batch`]), written to `inject`.
    fn inject_needed<'a>(
        &self,
        f: &'a Frame,
        slot: &mut Slot,
        parsed_here: &mut Names<'a>,
        inject: &mut BytesMut,
    ) {
        let needed = match f.tag {
            tag::PARSE => {
                let Ok(p) = decode_parse(&f.body) else {
                    return;
                };
                let fresh = !p.name.is_empty() && !parsed_here.contains(p.name);
                parsed_here.insert(p.name);
                if !fresh {
                    return;
                }
                let held = slot.stmts.holds(p.name, &slot.prepared);
                match (self.statements.get(p.name), held) {
                    // The client's own Parse or Close of it is on its way there.
                    (_, Holds::AsClientLeftIt) => {}
                    // PostgreSQL refuses a Parse of a name that exists (42P05): this
                    // backend gets the existing statement first, so it refuses too.
                    (Some(existing), held) if held != Holds::Version(Some(existing.generation)) => {
                        if held != Holds::Version(None) {
                            inject_close(inject, slot, p.name);
                        }
                        inject_parse(inject, slot, existing);
                    }
                    // A name the client closed earlier may linger on this backend.
                    (None, held) if held != Holds::Version(None) => {
                        inject_close(inject, slot, p.name)
                    }
                    _ => {}
                }
                return;
            }
            tag::BIND => decode_bind(&f.body).ok().map(|b| b.statement),
            tag::DESCRIBE => match decode_target(&f.body, "Describe") {
                Ok((protocol::Target::Statement, name)) => Some(name),
                _ => None,
            },
            _ => None,
        };
        let Some(name) = needed else { return };
        if parsed_here.contains(name) {
            return;
        }
        let held = slot.stmts.holds(name, &slot.prepared);
        let Some(p) = self.statements.get(name) else {
            // Unknown to the client: the server answers 26000 itself — once another
            // client's statement of that name, still on the connection, is gone.
            if !name.is_empty() && !matches!(held, Holds::Version(None) | Holds::AsClientLeftIt) {
                inject_close(inject, slot, name);
            }
            return;
        };
        match held {
            Holds::AsClientLeftIt => return,
            Holds::Version(Some(g)) if g == p.generation => return,
            Holds::Version(None) => {}
            _ if name.is_empty() => {} // a Parse of the unnamed one replaces it
            _ => inject_close(inject, slot, name),
        }
        inject_parse(inject, slot, p);
        parsed_here.insert(name);
    }
}

/// Statement names a batch parses: inline for the usual few, a set past that (a batch may
/// hold many thousand messages, and a list would make the check quadratic).
#[derive(Default)]
struct Names<'a> {
    few: smallvec::SmallVec<[&'a str; 8]>,
    many: HashSet<&'a str>,
}

impl<'a> Names<'a> {
    fn insert(&mut self, name: &'a str) {
        if self.many.is_empty() && self.few.len() < self.few.inline_size() {
            if !self.few.contains(&name) {
                self.few.push(name);
            }
            return;
        }
        if self.many.is_empty() {
            self.many.extend(self.few.drain(..));
        }
        self.many.insert(name);
    }

    fn contains(&self, name: &str) -> bool {
        self.few.contains(&name) || self.many.contains(name)
    }
}

/// Prepares `p` on `slot` ahead of the client's messages; the answer is dropped.
fn inject_parse(inject: &mut BytesMut, slot: &mut Slot, p: &Prepared) {
    p.parse.encode(inject);
    // A named statement outlives the session: the next client must not find it there,
    // unless statements stay with the connection (transaction pooling).
    slot.dirty |= !slot.shares_statements()
        && decode_parse(&p.parse.body).map_or(true, |p| !p.name.is_empty());
    slot.stmts.push(Pending::Parse {
        frame: p.parse.clone(),
        generation: p.generation,
        injected: true,
        verdict: None,
    });
}

/// Closes `name` on `slot` ahead of the client's messages; the answer is dropped.
fn inject_close(inject: &mut BytesMut, slot: &mut Slot, name: &str) {
    let start = inject.len();
    protocol::close(inject, protocol::Target::Statement, name);
    let frame = Frame::new(tag::CLOSE, inject[start + 5..].to_vec());
    slot.stmts.push(Pending::Close {
        frame,
        injected: true,
    });
}

#[cfg(test)]
#[path = "statements_tests.rs"]
mod tests;

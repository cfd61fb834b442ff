//! The session's side of routing: turns requests into a target backend using the pure
//! router, keeps the state a second backend needs (SETs to replay, prepared statements to
//! re-prepare), and opens backend connections lazily.

use std::collections::HashMap;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use super::request::Request;
use super::slot::Slot;
use crate::backend::{self, BackendError, Credential, NodeAddr, Startup};
use crate::protocol::{
    self, decode_bind, decode_parse, decode_query, decode_target, tag, Frame, PgError,
};
use crate::server::Context;

/// Where a request goes.
pub enum Target {
    Node(usize),
    /// The proxy answers itself with these bytes (admin commands, errors).
    Answer(Bytes),
}

/// What the session knows about a statement the client prepared.
struct Prepared {
    generation: u64,
    parse: Frame,
}

/// Routing state of one session.
pub struct Router {
    params: Vec<(String, String)>,
    credential: Credential,
    /// Nodes that failed for this session: reads go to the primary instead.
    unusable: Vec<bool>,
    /// The session's load-balance node (spec 5.1).
    lb_node: usize,
    statements: HashMap<String, Prepared>,
    next_generation: u64,
    /// Session-state commands (SET …) to replay on a backend opened later.
    state_log: Vec<String>,
}

impl Router {
    pub fn new(params: Vec<(String, String)>, credential: Credential, nodes: usize) -> Router {
        Router {
            params,
            credential,
            unusable: vec![false; nodes.max(1)],
            lb_node: 0,
            statements: HashMap::new(),
            next_generation: 1,
            state_log: Vec::new(),
        }
    }

    /// Picks the backend for `req`.
    pub fn route(&mut self, req: &Request, slots: &[Option<Slot>]) -> Target {
        let _ = slots;
        let node = match req {
            Request::Simple(_) | Request::Extended { .. } => self.lb_node,
            _ => 0,
        };
        if self.unusable.get(node).copied().unwrap_or(true) {
            Target::Node(0)
        } else {
            Target::Node(0.max(node))
        }
    }

    pub fn mark_unusable(&mut self, node: usize) {
        if let Some(u) = self.unusable.get_mut(node) {
            *u = true;
        }
    }

    /// Opens an authenticated connection to `node` for this session's user and database.
    pub async fn connect(&self, ctx: &Context, node: usize) -> Result<Slot, BackendError> {
        let cfg = ctx.config();
        let b = cfg
            .backends
            .get(node)
            .ok_or(BackendError::Closed { node })?;
        let addr = NodeAddr {
            node,
            host: b.hostname.clone(),
            port: b.port,
        };
        let timeout = Duration::from_millis(cfg.connect_timeout.max(1));
        let conn = match backend::start(&addr, &self.params, timeout, cfg.max_message_size).await? {
            Startup::Ready(c) => c,
            Startup::NeedsAuth(p) => p.complete(&self.credential).await?,
        };
        Ok(Slot::new(conn))
    }

    /// Brings a newly opened backend to the session's state.
    pub async fn replay_state(&self, slot: &mut Slot, max_len: u64) -> Result<(), BackendError> {
        for sql in &self.state_log {
            if let Some(e) = slot.exec_silent(sql, max_len).await? {
                return Err(BackendError::Server(e));
            }
        }
        Ok(())
    }

    /// Other connected backends that must run `req` too (session-state commands).
    pub fn mirror_targets(&self, req: &Request, node: usize, slots: &[Option<Slot>]) -> Vec<usize> {
        let _ = (req, node, slots);
        Vec::new()
    }

    /// The SQL text of a simple Query.
    pub fn simple_text(req: &Request) -> Option<String> {
        match req {
            Request::Simple(f) => decode_query(&f.body).ok().map(str::to_string),
            _ => None,
        }
    }

    /// Before an extended batch goes to `slot`: statements it binds or describes but that
    /// backend has not prepared (or holds an older version of) are prepared first, and the
    /// answers to those injected messages are dropped.
    pub fn prepare_for(&self, req: &Request, slot: &mut Slot) {
        let Request::Extended { frames, .. } = req else {
            return;
        };
        let mut inject = BytesMut::new();
        let mut parsed_here: Vec<&str> = Vec::new();
        for f in frames {
            let needed = match f.tag {
                tag::PARSE => {
                    if let Ok(p) = decode_parse(&f.body) {
                        parsed_here.push(p.name);
                        // A name the client closed earlier may linger on this backend.
                        if !p.name.is_empty()
                            && slot.prepared.contains_key(p.name)
                            && !self.statements.contains_key(p.name)
                        {
                            protocol::close(&mut inject, protocol::Target::Statement, p.name);
                            slot.swallow.push_back(protocol::btag::CLOSE_COMPLETE);
                            slot.prepared.remove(p.name);
                        }
                    }
                    None
                }
                tag::BIND => decode_bind(&f.body).ok().map(|b| b.statement),
                tag::DESCRIBE => match decode_target(&f.body, "Describe") {
                    Ok((protocol::Target::Statement, name)) => Some(name),
                    _ => None,
                },
                _ => None,
            };
            let Some(name) = needed else { continue };
            if parsed_here.contains(&name) {
                continue;
            }
            let Some(p) = self.statements.get(name) else {
                continue; // unknown: the server answers 26000 itself
            };
            if slot.prepared.get(name) == Some(&p.generation) {
                continue;
            }
            if slot.prepared.contains_key(name) && !name.is_empty() {
                protocol::close(&mut inject, protocol::Target::Statement, name);
                slot.swallow.push_back(protocol::btag::CLOSE_COMPLETE);
            }
            p.parse.encode(&mut inject);
            slot.swallow.push_back(protocol::btag::PARSE_COMPLETE);
            slot.prepared.insert(name.to_string(), p.generation);
            parsed_here.push(name);
        }
        slot.bout.extend_from_slice(&inject);
    }

    /// After `req` went to `node`: remember the statements it prepared or closed.
    pub fn after_send(&mut self, req: &Request, node: usize) {
        let _ = node;
        let Request::Extended { frames, .. } = req else {
            return;
        };
        for f in frames {
            match f.tag {
                tag::PARSE => {
                    if let Ok(p) = decode_parse(&f.body) {
                        let generation = self.next_generation;
                        self.next_generation += 1;
                        self.statements.insert(
                            p.name.to_string(),
                            Prepared {
                                generation,
                                parse: f.clone(),
                            },
                        );
                    }
                }
                tag::CLOSE => {
                    if let Ok((protocol::Target::Statement, name)) = decode_target(&f.body, "Close")
                    {
                        self.statements.remove(name);
                    }
                }
                _ => {}
            }
        }
    }

    /// Marks, on the slot that ran them, the statements a batch prepared.
    pub fn record_prepared(&self, req: &Request, slot: &mut Slot) {
        let Request::Extended { frames, .. } = req else {
            return;
        };
        for f in frames {
            if f.tag == tag::PARSE {
                if let Ok(p) = decode_parse(&f.body) {
                    if let Some(s) = self.statements.get(p.name) {
                        slot.prepared.insert(p.name.to_string(), s.generation);
                    }
                }
            } else if f.tag == tag::CLOSE {
                if let Ok((protocol::Target::Statement, name)) = decode_target(&f.body, "Close") {
                    slot.prepared.remove(name);
                }
            }
        }
    }
}

/// An ErrorResponse plus ReadyForQuery, for requests the proxy refuses itself.
#[allow(dead_code)]
pub fn error_answer(e: &PgError, status: u8) -> Bytes {
    let mut out = BytesMut::new();
    e.encode(&mut out);
    protocol::ready_for_query(&mut out, status);
    out.freeze()
}

//! The session's prepared statements on their way to backends: batches written with the
//! re-prepares they need, and the verdicts of statement names kept as the backends answer.

use super::Router;
use crate::protocol::{self, decode_parse, tag, Frame};
use crate::session::request::Request;
use crate::session::slot::Slot;
use crate::session::statements::Pending;

impl Router {
    /// Writes `req` to `slot`: an extended batch with the statements it needs that the
    /// backend lacks prepared right before the messages that need them. Returns how many
    /// messages the proxy added.
    pub fn write_request(&mut self, req: &Request, slot: &mut Slot) -> usize {
        let Request::Extended { frames, .. } = req else {
            req.encode(&mut slot.bout);
            return 0;
        };
        self.note_sent_verdicts(req);
        let verdicts = std::mem::take(&mut self.parse_verdicts);
        self.registry.write_batch(frames, slot, verdicts)
    }

    /// `req` went to `node` (on `slot`), to be answered with `ready` ReadyForQuery: its
    /// statements wait for their answers there, and an open implicit transaction (a batch
    /// not ended by Sync) keeps what follows on `node`.
    pub fn sent(&mut self, req: &Request, ready: usize, node: usize, slot: &mut Slot) {
        self.registry.track_syncs(ready, slot);
        if ready > 0 {
            self.open_unit = None;
        } else if let Request::Extended { .. } = req {
            self.open_unit = Some(node);
        }
    }

    /// Until their answers settle them, the batch's Parses give their names a verdict when
    /// PostgreSQL cannot refuse them for the name: the first Parse of a name that does not
    /// exist (or was closed earlier in the batch), and any of the unnamed statement.
    fn note_sent_verdicts(&mut self, req: &Request) {
        let Request::Extended { frames, .. } = req else {
            return;
        };
        let mut verdicts = self.parse_verdicts.iter();
        let mut exists: smallvec::SmallVec<[(&str, bool); 4]> = Default::default();
        for f in frames {
            let (name, parse) = match f.tag {
                tag::PARSE => match decode_parse(&f.body) {
                    Ok(p) => (p.name, true),
                    Err(_) => return,
                },
                tag::CLOSE => match protocol::decode_target(&f.body, "Close") {
                    Ok((protocol::Target::Statement, n)) => (n, false),
                    _ => continue,
                },
                _ => continue,
            };
            let known = exists.iter().find(|(n, _)| *n == name).map(|(_, e)| *e);
            let existed = known.unwrap_or_else(|| self.registry.contains(name));
            exists.retain(|(n, _)| *n != name);
            exists.push((name, parse));
            if !parse {
                continue;
            }
            let Some(verdict) = verdicts.next() else {
                return;
            };
            if name.is_empty() || !existed {
                self.verdicts.insert(name.to_string(), verdict.clone());
            }
        }
    }

    /// A backend carried out a Parse or Close of the client's: the name's verdict follows.
    pub fn settle(&mut self, op: Pending) {
        match &op {
            Pending::Parse { frame, verdict, .. } => {
                if let Ok(p) = decode_parse(&frame.body) {
                    match verdict {
                        Some(v) => self.verdicts.insert(p.name.to_string(), v.clone()),
                        // Not classified (routing stopped early): no verdict, the primary.
                        None => self.verdicts.remove(p.name),
                    };
                }
            }
            Pending::Close { frame, .. } => {
                if let Ok((protocol::Target::Statement, name)) =
                    protocol::decode_target(&frame.body, "Close")
                {
                    self.verdicts.remove(name);
                }
            }
            _ => {}
        }
        self.registry.settle(op);
    }

    /// Transaction pooling: a batch of only Parses and Closes is carried out here as if a
    /// backend had (see [`Registry::carry_out_locally`]). False, changing nothing, when a
    /// backend must judge it.
    pub fn prepare_locally(&mut self, frames: &[Frame]) -> bool {
        let (classifier, rcfg) = (&self.classifier, &self.rcfg);
        let classify = |sql: &str| classifier.classify_for(sql, rcfg);
        let Some(ops) = self.registry.carry_out_locally(frames, classify) else {
            return false;
        };
        for op in ops {
            self.settle(op);
        }
        true
    }
}

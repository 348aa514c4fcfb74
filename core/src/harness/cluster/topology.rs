//! What the cluster nodes say about each other (`CLUSTER NODES`, `CLUSTER INFO`,
//! `INFO replication`), and whether they agree on a healthy topology.

use std::io;
use std::ops::RangeInclusive;

use super::RedisCluster;
use crate::harness::HarnessError;

/// Total hash slots of a Redis Cluster.
const CLUSTER_SLOTS: u32 = 16384;

/// One line of `CLUSTER NODES`: one node as some node sees it.
#[derive(Debug, Clone)]
pub(super) struct NodeEntry {
    pub(super) id: String,
    pub(super) port: u16,
    pub(super) myself: bool,
    pub(super) master: bool,
    /// Flagged `fail` (agreed failure; a mere `fail?` suspicion does not count).
    pub(super) failed: bool,
    pub(super) master_id: Option<String>,
    pub(super) slots: Vec<RangeInclusive<u16>>,
}

pub(super) fn parse_cluster_nodes(text: &str) -> Vec<NodeEntry> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let id = fields.next()?.to_owned();
            // `ip:port@cport[,hostname]`
            let addr = fields.next()?;
            let addr = addr.split('@').next()?;
            let port = addr.rsplit(':').next()?.parse().unwrap_or(0);
            let flags: Vec<&str> = fields.next()?.split(',').collect();
            let master_id = fields.next().filter(|m| *m != "-").map(str::to_owned);
            // ping-sent, pong-recv, config-epoch, link-state
            let mut fields = fields.skip(4);
            let slots = fields
                .by_ref()
                .filter(|s| !s.starts_with('['))
                .filter_map(|s| match s.split_once('-') {
                    Some((lo, hi)) => Some(lo.parse().ok()?..=hi.parse().ok()?),
                    None => {
                        let slot = s.parse().ok()?;
                        Some(slot..=slot)
                    }
                })
                .collect();
            Some(NodeEntry {
                id,
                port,
                myself: flags.contains(&"myself"),
                master: flags.contains(&"master"),
                failed: flags.contains(&"fail"),
                master_id,
                slots,
            })
        })
        .collect()
}

/// The role of a running node in one node's view.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Role {
    /// A master serving these slot ranges (sorted; empty for a master without slots).
    Master(Vec<RangeInclusive<u16>>),
    /// A replica of the node with this index (`None`: of a node the harness does not know).
    Replica(Option<usize>),
}

fn slot_count(ranges: &[RangeInclusive<u16>]) -> u32 {
    ranges
        .iter()
        .map(|r| u32::from(*r.end()) - u32::from(*r.start()) + 1)
        .sum()
}

pub(super) fn info_field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|l| l.trim().strip_prefix(name)?.strip_prefix(':'))
}

impl RedisCluster {
    /// Node `i`'s view of the running nodes, or `None` if `i` does not answer, is not
    /// `cluster_state:ok`, or sees a running node as failed.
    fn healthy_view(&self, i: usize) -> Option<Vec<Option<Role>>> {
        let mut conn = self.nodes[i].connection().ok()?;
        let info: String = redis::cmd("CLUSTER").arg("INFO").query(&mut conn).ok()?;
        if info_field(&info, "cluster_state") != Some("ok")
            || info_field(&info, "cluster_slots_ok") != Some("16384")
        {
            return None;
        }
        let text: String = redis::cmd("CLUSTER").arg("NODES").query(&mut conn).ok()?;
        self.view_from(&parse_cluster_nodes(&text), true)
    }

    /// Roles of the running nodes (index-aligned; `None` for stopped nodes) from a
    /// `CLUSTER NODES` listing. With `strict`, a running node that is missing or
    /// flagged `fail` makes the view `None`.
    fn view_from(&self, entries: &[NodeEntry], strict: bool) -> Option<Vec<Option<Role>>> {
        let mut view = vec![None; self.nodes.len()];
        for i in self.running() {
            let entry = entries.iter().find(|e| e.port == self.nodes[i].port);
            let Some(entry) = entry else {
                if strict {
                    return None;
                }
                continue;
            };
            if strict && entry.failed {
                return None;
            }
            view[i] = Some(if entry.master {
                let mut slots = entry.slots.clone();
                slots.sort_by_key(|r| *r.start());
                Role::Master(slots)
            } else {
                let of = entry
                    .master_id
                    .as_deref()
                    .and_then(|id| entries.iter().find(|e| e.id == id))
                    .and_then(|m| self.index_of_port(m.port));
                Role::Replica(of)
            });
        }
        Some(view)
    }

    pub(super) fn converged(&self) -> bool {
        let running: Vec<usize> = self.running().collect();
        let mut common = None;
        for &i in &running {
            let Some(view) = self.healthy_view(i) else {
                return false;
            };
            match &common {
                None => common = Some(view),
                Some(c) if *c == view => {}
                Some(_) => return false,
            }
        }
        let Some(view) = common else {
            return false;
        };
        // Three running masters own every slot; every other running node replicates one.
        let mut masters = Vec::new();
        let mut total = 0;
        for &i in &running {
            match &view[i] {
                Some(Role::Master(slots)) if !slots.is_empty() => {
                    masters.push(i);
                    total += slot_count(slots);
                }
                Some(Role::Replica(Some(m))) if self.nodes[*m].child.is_some() => {}
                _ => return false,
            }
        }
        if masters.len() != Self::MASTERS || total != CLUSTER_SLOTS {
            return false;
        }
        let all_running = running.len() == self.nodes.len();
        for &m in &masters {
            let expected = running
                .iter()
                .filter(|&&r| view[r] == Some(Role::Replica(Some(m))))
                .count();
            if all_running && expected != self.replicas {
                return false;
            }
            let attached = self.nodes[m]
                .query::<String>(redis::cmd("INFO").arg("replication"))
                .is_ok_and(|info| {
                    let online = info
                        .lines()
                        .filter(|l| l.starts_with("slave") && l.contains("state=online"))
                        .count();
                    info_field(&info, "connected_slaves") == Some(&expected.to_string())
                        && online == expected
                });
            if !attached {
                return false;
            }
        }
        running.iter().filter(|r| !masters.contains(r)).all(|&r| {
            self.nodes[r]
                .query::<String>(redis::cmd("INFO").arg("replication"))
                .is_ok_and(|info| info_field(&info, "master_link_status") == Some("up"))
        })
    }

    /// The current topology as one running node sees it (no health requirements).
    fn view(&self) -> Result<Vec<Option<Role>>, HarnessError> {
        let mut last = None;
        for i in self.running() {
            match self.nodes[i].query::<String>(redis::cmd("CLUSTER").arg("NODES")) {
                Ok(text) => {
                    return Ok(self
                        .view_from(&parse_cluster_nodes(&text), false)
                        .expect("non-strict views always exist"));
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("no cluster node is running").into()))
    }

    /// The index of the running master that serves `key`'s slot (`CLUSTER KEYSLOT` +
    /// `CLUSTER NODES` on a running node), e.g. to [`kill_master`](Self::kill_master)
    /// the node holding a key. Fails if no running master serves the slot (e.g. during a
    /// failover: [`wait_failover`](Self::wait_failover) first).
    pub fn master_for_key(&self, key: &str) -> Result<usize, HarnessError> {
        let slot = self.key_slot(key)?;
        let view = self.view()?;
        view.iter()
            .position(|role| {
                matches!(role, Some(Role::Master(slots)) if slots.iter().any(|r| r.contains(&slot)))
            })
            .ok_or_else(|| {
                io::Error::other(format!("no running master serves slot {slot}")).into()
            })
    }

    /// Indices of the running masters that serve slots, ascending.
    pub fn masters(&self) -> Result<Vec<usize>, HarnessError> {
        let view = self.view()?;
        Ok((0..view.len())
            .filter(|&i| matches!(&view[i], Some(Role::Master(s)) if !s.is_empty()))
            .collect())
    }

    /// Indices of the running replicas of node `master`, ascending.
    pub fn replicas_of(&self, master: usize) -> Result<Vec<usize>, HarnessError> {
        let view = self.view()?;
        Ok((0..view.len())
            .filter(|&i| view[i] == Some(Role::Replica(Some(master))))
            .collect())
    }
}

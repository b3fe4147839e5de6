//! KooDrive's quota across a fleet: one budget and one cooldown shared through a real
//! `redis-server` by three gateways, a local share of the budget while Redis is away, and the
//! edges where the budget meets the upstream client.

mod upstream_edges;

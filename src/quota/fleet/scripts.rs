//! The fleet budget's keys and Lua scripts, each one atomic step in Redis. Times come from
//! Redis's own clock (`TIME`), the same for every sidecar whatever theirs say. The keys share a
//! Redis Cluster hash tag, so one script may touch them all.

use std::sync::LazyLock;
use std::time::Duration;

use redis::{Script, ScriptInvocation};

use crate::config::RateLimitConfig;
use crate::quota::Priority;

/// GCRA over microseconds. Answers `{1, tokens left}`, `{0, µs until a token}`, `{-1, µs of
/// cooldown left}`, or `{2, µs}` for a read while a write waits for a token somewhere in the
/// fleet (writes go first). A write refused marks itself waiting for `ARGV[4]` ms. No bucket
/// (`ARGV[1]` 0): only the cooldown is checked.
static TAKE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.replicate_commands then redis.replicate_commands() end
local cool = redis.call('PTTL', KEYS[2])
if cool > 0 then return {-1, cool * 1000} end
local interval = tonumber(ARGV[1])
if interval == 0 then return {1, -1} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or 0
if tat < now then tat = now end
local after = tat + interval
local limit = interval * tonumber(ARGV[2])
local wait = after - now - limit
local write = ARGV[3] == 'w'
if wait > 0 then
  if write then redis.call('SET', KEYS[3], '1', 'PX', ARGV[4]) end
  return {0, wait}
end
if not write and redis.call('EXISTS', KEYS[3]) == 1 then return {2, interval} end
redis.call('SET', KEYS[1], string.format('%d', after), 'PX', math.ceil((after - now) / 1000) + 1000)
if write then redis.call('DEL', KEYS[3]) end
return {1, math.floor((limit - (after - now)) / interval)}",
    )
});

/// Starts or extends (never shortens) the fleet's cooldown, and tells every sidecar.
static COOL_DOWN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
end
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1",
    )
});

/// Registers a sidecar (scored by Redis's clock in ms), forgets those silent for `ARGV[2]` ms,
/// and answers `{live sidecars, ms of cooldown left}`.
static REGISTER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {redis.call('ZCARD', KEYS[1]), redis.call('PTTL', KEYS[2])}",
    )
});

pub struct Keys {
    tat: String,
    cool: String,
    writes: String,
    sidecars: String,
    channel: String,
}

fn millis(length: Duration) -> u64 {
    u64::try_from(length.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl Keys {
    pub fn new(prefix: &str) -> Keys {
        let key = |name: &str| format!("{prefix}:{{budget}}:{name}");
        Keys {
            tat: key("tat"),
            cool: key("cooldown"),
            writes: key("writes"),
            sidecars: key("sidecars"),
            channel: crate::fleet::channel(prefix),
        }
    }

    pub fn take(
        &self,
        limit: Option<RateLimitConfig>,
        priority: Priority,
    ) -> ScriptInvocation<'static> {
        let (interval, burst, wait) = limit.map_or((0, 0, 0), |limit| {
            let interval = 1_000_000 / u64::from(limit.rps.get());
            (
                interval.max(1),
                limit.burst.get(),
                millis(limit.max_wait) + 100,
            )
        });
        let mut invocation = TAKE.prepare_invoke();
        invocation
            .key(&self.tat)
            .key(&self.cool)
            .key(&self.writes)
            .arg(interval)
            .arg(burst)
            .arg(match priority {
                Priority::Write => "w",
                _ => "r",
            })
            .arg(wait);
        invocation
    }

    pub fn cool_down(&self, length: Duration) -> ScriptInvocation<'static> {
        let mut invocation = COOL_DOWN.prepare_invoke();
        invocation
            .key(&self.cool)
            .arg(millis(length))
            .arg(&self.channel)
            .arg(crate::fleet::cooldown_hint(length));
        invocation
    }

    pub fn register(&self, id: &str, live: Duration) -> ScriptInvocation<'static> {
        let mut invocation = REGISTER.prepare_invoke();
        invocation
            .key(&self.sidecars)
            .key(&self.cool)
            .arg(id)
            .arg(millis(live));
        invocation
    }
}

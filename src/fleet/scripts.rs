//! The Lua scripts the fleet runs in Redis, each one atomic step.

use std::sync::LazyLock;

use redis::{Script, ScriptInvocation};

/// How long a counter nobody reads or bumps is kept. One that expires comes back from the
/// clock, above every number it had reached: forgetting it is safe.
const COUNTER_TTL_MS: u64 = 7 * 24 * 3600 * 1000;

/// Each key's number, set to the seed (the clock) first when it is missing (`SET NX`): a
/// counter Redis lost comes back above every number it had reached, never below.
static READ: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local out = {}
for i, key in ipairs(KEYS) do
  redis.call('SET', key, ARGV[1], 'NX')
  redis.call('PEXPIRE', key, ARGV[2])
  out[i] = redis.call('GET', key)
end
return out",
    )
});

/// Moves the counter to the larger of its next number and the clock, and publishes the hint
/// with the new number: one step, so no sidecar can hear of a bump Redis does not hold, and a
/// counter that went back (a failover to a replica that missed the last bumps) moves past every
/// number it had reached. (Lua numbers are doubles: `%d` writes one in full, where `..` would
/// write `1.7e+15`; clock values stay below 2^53, where doubles are exact.)
static BUMP: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local n = (tonumber(redis.call('GET', KEYS[1])) or 0) + 1
local clock = tonumber(ARGV[1])
if clock > n then n = clock end
local text = string.format('%d', n)
redis.call('SET', KEYS[1], text, 'PX', ARGV[4])
redis.call('PUBLISH', ARGV[2], ARGV[3] .. text)
return n",
    )
});

/// Deletes a lock only while it still holds this holder's token.
static UNLOCK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0",
    )
});

pub fn read_generations(keys: &[String], seed: u64) -> ScriptInvocation<'static> {
    let mut invocation = READ.prepare_invoke();
    for key in keys {
        invocation.key(key);
    }
    invocation.arg(seed).arg(COUNTER_TTL_MS);
    invocation
}

pub fn bump(key: &str, seed: u64, channel: &str, hint: &str) -> ScriptInvocation<'static> {
    let mut invocation = BUMP.prepare_invoke();
    invocation
        .key(key)
        .arg(seed)
        .arg(channel)
        .arg(hint)
        .arg(COUNTER_TTL_MS);
    invocation
}

pub fn unlock(key: &str, token: u64) -> ScriptInvocation<'static> {
    let mut invocation = UNLOCK.prepare_invoke();
    invocation.key(key).arg(token);
    invocation
}

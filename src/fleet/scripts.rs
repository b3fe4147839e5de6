//! The Lua scripts the fleet runs in Redis, each one atomic step.

use std::sync::LazyLock;

use redis::{Script, ScriptInvocation};

/// Each key's number, set to the seed first when it is missing (`SET NX`): a counter Redis lost
/// comes back above every number it had reached, never below.
static READ: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local out = {}
for i, key in ipairs(KEYS) do
  redis.call('SET', key, ARGV[1], 'NX')
  out[i] = redis.call('GET', key)
end
return out",
    )
});

/// Seeds the counter when it is missing, increments it, and publishes the hint with the new
/// number: one step, so no sidecar can hear of a bump Redis does not hold. (Lua numbers are
/// doubles: `%d` writes one in full, where `..` would write `1.7e+15`; clock seeds stay below
/// 2^53, where doubles are exact.)
static BUMP: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
redis.call('SET', KEYS[1], ARGV[1], 'NX')
local n = redis.call('INCR', KEYS[1])
redis.call('PUBLISH', ARGV[2], ARGV[3] .. string.format('%d', n))
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
    invocation.arg(seed);
    invocation
}

pub fn bump(key: &str, seed: u64, channel: &str, hint: &str) -> ScriptInvocation<'static> {
    let mut invocation = BUMP.prepare_invoke();
    invocation.key(key).arg(seed).arg(channel).arg(hint);
    invocation
}

pub fn unlock(key: &str, token: u64) -> ScriptInvocation<'static> {
    let mut invocation = UNLOCK.prepare_invoke();
    invocation.key(key).arg(token);
    invocation
}

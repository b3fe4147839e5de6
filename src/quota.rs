//! The budget of calls to KooDrive (`[upstream.rate_limit]`) and the cooldown after KooDrive
//! throttles us: every exchange asks here first, with its [`Priority`]. Task writes go first,
//! then requests a client waits on, then background refreshes, which never wait (their stale
//! page keeps being served). Not to be confused with `budget.rs`, the memory budget.
//!
//! The bucket and the cooldown sit behind [`Budget`]: [`LocalBudget`] for one sidecar; a
//! fleet-wide implementation (one bucket and one cooldown shared through Redis) slots in without
//! touching the callers.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use std::num::NonZeroU32;
//! use std::time::Duration;
//! use koodrive_gateway::config::RateLimitConfig;
//! use koodrive_gateway::metrics::Metrics;
//! use koodrive_gateway::quota::{Ask, Quota};
//! use koodrive_gateway::route::Route;
//!
//! let one = NonZeroU32::MIN;
//! let limit = RateLimitConfig { rps: one, burst: one, max_wait: Duration::ZERO };
//! let quota = Quota::new(Some(limit), Duration::from_secs(5), Metrics::new());
//! assert!(quota.acquire(Ask::CLIENT, Route::TaskRead).await.is_ok());
//! // The one token is spent and nobody may wait: the next is refused at once.
//! assert!(quota.acquire(Ask::CLIENT, Route::TaskRead).await.is_err());
//! # });
//! ```

mod fleet;
mod local;
mod throttle;

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;
use tokio::time::Instant;

use crate::config::RateLimitConfig;
use crate::error::GatewayError;
use crate::metrics::{BudgetLabels, Metrics};
use crate::route::Route;
pub use fleet::FleetBudget;
pub use local::LocalBudget;
pub use throttle::{apig_throttle, retry_after, Throttle, APIG_WINDOW};

/// Whose turn comes first when the budget is short.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// A task write: never waits behind reads.
    Write,
    /// A read a client is waiting on.
    Client,
    /// A stale page's background refresh: takes a token only when one is free at once.
    Background,
}

impl Priority {
    /// The `priority` label of the budget metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Write => "write",
            Priority::Client => "client",
            Priority::Background => "background",
        }
    }
}

/// What an exchange asks of the budget: its priority, and whether it may wait for a token (a
/// request with a stale page at hand is answered with it at once instead).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ask {
    pub priority: Priority,
    pub may_wait: bool,
}

impl Ask {
    pub const WRITE: Ask = Ask {
        priority: Priority::Write,
        may_wait: true,
    };
    pub const CLIENT: Ask = Ask {
        priority: Priority::Client,
        may_wait: true,
    };
    /// A client read with a stale page to fall back on.
    pub const STALE_AT_HAND: Ask = Ask {
        priority: Priority::Client,
        may_wait: false,
    };
    pub const BACKGROUND: Ask = Ask {
        priority: Priority::Background,
        may_wait: false,
    };

    /// A write for a task write, else a read a client waits on.
    pub fn for_route(route: Route) -> Ask {
        match route {
            Route::TaskWrite => Ask::WRITE,
            _ => Ask::CLIENT,
        }
    }
}

/// A take: answered at once (the local bucket, nothing allocated), or in progress (the fleet's
/// asks Redis).
pub enum Taking<'a> {
    Now(Result<u32, Duration>),
    Later(std::pin::Pin<Box<dyn Future<Output = Result<u32, Duration>> + Send + 'a>>),
}

impl Future for Taking<'_> {
    type Output = Result<u32, Duration>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        match self.get_mut() {
            Taking::Now(taken) => std::task::Poll::Ready(*taken),
            Taking::Later(taking) => taking.as_mut().poll(cx),
        }
    }
}

/// The seam between the request path and where the bucket and the cooldown live.
pub trait Budget: Send + Sync {
    /// Takes one token for a call of this priority: the tokens left, or how long until one is
    /// due.
    fn take(&self, priority: Priority) -> Taking<'_>;
    /// Starts (or extends) a cooldown of `length` from now.
    fn cool_down(&self, length: Duration);
    /// What is left of the cooldown in force, if any.
    fn cooling(&self) -> Option<Duration>;
}

/// How long a read that yields to a waiting write sleeps before it looks again.
const YIELD: Duration = Duration::from_millis(5);

/// The longest cooldown a `Retry-After` may impose: beyond it, a wrong header would silence the
/// gateway for longer than any throttle KooDrive documents.
const MAX_COOLDOWN: Duration = Duration::from_secs(300);

/// The budget as the exchange uses it: priorities, waiting bounded by `max_wait`, the metrics.
pub struct Quota {
    budget: Arc<dyn Budget>,
    max_wait: Duration,
    /// The cooldown when KooDrive sends no `Retry-After`; zero turns the cooldown off.
    default_cooldown: Duration,
    metrics: Arc<Metrics>,
    /// Writes waiting for a token: reads yield to them.
    writes_waiting: AtomicUsize,
}

/// An exchange the budget let through, and how long it waited for that.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Granted {
    pub delayed: Option<Duration>,
}

impl Quota {
    pub fn new(
        limit: Option<RateLimitConfig>,
        default_cooldown: Duration,
        metrics: Arc<Metrics>,
    ) -> Quota {
        let max_wait = limit.map_or(Duration::ZERO, |limit| limit.max_wait);
        Quota::with_budget(
            Arc::new(LocalBudget::new(limit)),
            max_wait,
            default_cooldown,
            metrics,
        )
    }

    /// The fleet's budget, shared through Redis, with a local share while Redis is away.
    pub fn for_fleet(
        fleet: Arc<crate::fleet::Fleet>,
        limit: Option<RateLimitConfig>,
        default_cooldown: Duration,
        metrics: Arc<Metrics>,
    ) -> Quota {
        let max_wait = limit.map_or(Duration::ZERO, |limit| limit.max_wait);
        let budget = FleetBudget::start(fleet, limit, Arc::clone(&metrics));
        Quota::with_budget(budget, max_wait, default_cooldown, metrics)
    }

    /// A quota over any [`Budget`].
    pub fn with_budget(
        budget: Arc<dyn Budget>,
        max_wait: Duration,
        default_cooldown: Duration,
        metrics: Arc<Metrics>,
    ) -> Quota {
        Quota {
            budget,
            max_wait,
            default_cooldown,
            metrics,
            writes_waiting: AtomicUsize::new(0),
        }
    }

    /// Waits for a token as `ask` allows: `Ok` when the exchange may go, the 429
    /// [`GatewayError::RateLimited`] (with the time until budget is due) when it may not.
    pub async fn acquire(&self, ask: Ask, route: Route) -> Result<Granted, GatewayError> {
        let started = Instant::now();
        let deadline = match ask.may_wait && ask.priority != Priority::Background {
            true => started + self.max_wait,
            false => started,
        };
        let labels = BudgetLabels {
            route: route.name(),
            priority: ask.priority.as_str(),
        };
        let mut waiting: Option<WaitingWrite<'_>> = None;
        let mut slept = false;
        loop {
            let wait = match self.budget.cooling() {
                Some(left) => {
                    // Perhaps another sidecar's cooldown: the gauge says so here too.
                    if self.metrics.quota.cooldown_active.get() == 0 {
                        self.watch_cooldown();
                    }
                    left
                }
                None if self.yields(ask.priority) => YIELD,
                None => match self.budget.take(ask.priority).await {
                    Ok(left) => {
                        self.metrics.quota.tokens.set(i64::from(left));
                        let delayed = slept.then(|| started.elapsed());
                        if delayed.is_some() {
                            self.metrics.quota.delayed.get_or_create(&labels).inc();
                        }
                        return Ok(Granted { delayed });
                    }
                    Err(due) => {
                        self.metrics.quota.tokens.set(0);
                        due
                    }
                },
            };
            if Instant::now() + wait > deadline {
                self.metrics.quota.refused.get_or_create(&labels).inc();
                if ask.priority == Priority::Background {
                    self.metrics.quota.refreshes_skipped.inc();
                }
                return Err(GatewayError::RateLimited(wait));
            }
            if ask.priority == Priority::Write && waiting.is_none() {
                waiting = Some(WaitingWrite::enter(&self.writes_waiting));
            }
            tokio::time::sleep(wait).await;
            slept = true;
        }
    }

    /// Whether a request of this priority leaves the next token to a waiting write.
    fn yields(&self, priority: Priority) -> bool {
        priority != Priority::Write && self.writes_waiting.load(Ordering::Acquire) > 0
    }

    /// KooDrive throttled us (`why` says how): counted, and a cooldown starts for its
    /// `Retry-After`, or the default.
    pub fn throttled(&self, why: Throttle, headers: &HeaderMap) {
        self.metrics
            .quota
            .throttles
            .get_or_create(&crate::metrics::ReasonLabels {
                reason: why.as_str(),
            })
            .inc();
        if self.default_cooldown.is_zero() {
            return;
        }
        let length = retry_after(headers, std::time::SystemTime::now())
            .unwrap_or(self.default_cooldown)
            .min(MAX_COOLDOWN);
        if length.is_zero() {
            return;
        }
        tracing::warn!(
            cooldown_ms = length.as_millis() as u64,
            reason = why.as_str(),
            "KooDrive is throttling the gateway: calls to it wait for the cooldown"
        );
        self.budget.cool_down(length);
        self.watch_cooldown();
    }

    /// Checks an answer read whole for KooDrive's throttling error in a body (a 429 is seen by
    /// its status, in the exchange).
    pub fn saw_body(&self, status: http::StatusCode, headers: &HeaderMap, body: &[u8]) {
        if status != http::StatusCode::TOO_MANY_REQUESTS && throttle::apig_throttle(body) {
            self.throttled(Throttle::ApigBody, headers);
        }
    }

    /// Keeps `budget_cooldown_active` at 1 until the cooldown (perhaps extended) is over.
    fn watch_cooldown(&self) {
        let gauge = self.metrics.quota.cooldown_active.clone();
        gauge.set(1);
        let budget = Arc::clone(&self.budget);
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            while let Some(left) = budget.cooling() {
                tokio::time::sleep(left).await;
            }
            gauge.set(0);
        });
    }
}

/// A write counted as waiting while it is held, so that reads let it go first.
struct WaitingWrite<'a>(&'a AtomicUsize);

impl<'a> WaitingWrite<'a> {
    fn enter(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        WaitingWrite(count)
    }
}

impl Drop for WaitingWrite<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests;

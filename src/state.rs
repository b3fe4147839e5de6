//! What every request shares: the upstream client, the cache, the limits and the metrics, and
//! the reloadable part (credentials, normalization rules) swapped whole on SIGHUP.

use std::sync::Arc;

use arc_swap::ArcSwap;
use http::{HeaderValue, Method};

use crate::admission::Admission;
use crate::auth::Auth;
use crate::body::Body;
use crate::budget::Budget;
use crate::cache::{CacheOutcome, TaskListCache};
use crate::metrics::Metrics;
use crate::normalize::{NormalizeConfig, Rule};
use crate::route::{Route, TASK_LIST_PATH};
use crate::upstream::Upstream;

/// A future on the heap, for the paths that wait on KooDrive. Every request's future is sized for
/// its largest branch; boxed, those branches cost a cache hit one pointer instead of kilobytes
/// held for each request in flight. (Built in a plain function: `Box::pin` of an async call inside
/// an async function still reserves the call's whole future in the caller's.)
pub type Boxed<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// A response and what the cache did for it.
pub type Served = (http::Response<Body>, CacheOutcome);

/// Everything a request needs, shared by all connections.
pub struct State {
    pub upstream: Upstream,
    /// What a reload (SIGHUP) may change, swapped whole; a request keeps the one it started with.
    pub live: ArcSwap<Live>,
    pub max_signed_body: u64,
    /// The bound on streamed (unsigned) request bodies.
    pub max_body: u64,
    /// Requests admitted at once (`server.max_in_flight`); more are shed with a 503.
    pub admission: Admission,
    /// Bytes all buffered bodies may hold at once (`server.max_buffered_bytes`).
    pub budget: Budget,
    pub cache: Arc<TaskListCache>,
    pub metrics: Arc<Metrics>,
}

/// The reloadable part of the gateway: credentials and normalization rules.
pub struct Live {
    pub auth: Auth,
    pub normalize: NormalizeConfig,
    task_list_rule: Option<Rule>,
}

impl Live {
    pub fn new(auth: Auth, normalize: NormalizeConfig) -> Live {
        let task_list_rule = normalize.rules.find(&Method::GET, TASK_LIST_PATH).cloned();
        Live {
            auth,
            normalize,
            task_list_rule,
        }
    }

    /// The normalization rule of a request: the task list's is found once per config, since
    /// every task-list page is fetched as `GET` of the one path.
    pub fn rule(&self, route: Route, method: &Method, path: &str) -> Option<&Rule> {
        match route {
            Route::TaskList => self.task_list_rule.as_ref(),
            _ => self.normalize.rules.find(method, path),
        }
    }

    /// The rule every task-list page is normalized by.
    pub fn task_list_rule(&self) -> Option<&Rule> {
        self.task_list_rule.as_ref()
    }
}

/// A request resolved once, at the top of the path, and carried down it (Pingora's per-request
/// `CTX`): its route, the live config it started with, its normalization rule, its trace id.
pub struct Ctx<'a> {
    pub route: Route,
    pub live: &'a Arc<Live>,
    pub rule: Option<&'a Rule>,
    pub trace_id: &'a HeaderValue,
}

impl<'a> Ctx<'a> {
    pub fn resolve(
        route: Route,
        live: &'a Arc<Live>,
        parts: &http::request::Parts,
        trace_id: &'a HeaderValue,
    ) -> Ctx<'a> {
        Ctx {
            route,
            live,
            rule: live.rule(route, &parts.method, parts.uri.path()),
            trace_id,
        }
    }
}

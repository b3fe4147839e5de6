//! The task polls (`GET /task/{id}`, `GET /task/result?taskId=`) and any other
//! `[[cache.routes]]` route: resolved here to a key and the route's windows, then served by the
//! path the task list takes (`task_list::serve_cached`): cached and collapsed per identity, stale
//! pages while refreshed or while KooDrive fails. A request the route cannot key (a parameter
//! the key does not hold, a repeated or missing one) is forwarded as any other read.

use http::request::Parts;
use http::{Method, Uri};

use crate::route::Route;
use crate::state::{Ctx, State};
use crate::task_list::Cached;

/// The cached route of a `GET` under `/task/`, with `parts.uri` set to what is fetched for the
/// whole key (the path and the key parameters, in name order); `None`: not cached.
pub async fn resolve(state: &State, ctx: &Ctx<'_>, parts: &mut Parts) -> Option<Cached> {
    if ctx.route != Route::TaskRead || parts.method != Method::GET {
        return None;
    }
    let (canonical, windows) = {
        let config = state.cache.config();
        let route = config.routes.find(parts.uri.path())?;
        // `ttl = "0s"`: the route is not cached (a built-in poll turned off).
        if route.windows.ttl.is_zero() {
            return None;
        }
        let mut pairs: Vec<(String, String)> = Vec::with_capacity(route.key_params.len());
        for (name, value) in form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes()) {
            let known = route.key_params.iter().any(|p| *p == name);
            if !known || pairs.iter().any(|(seen, _)| *seen == name) {
                return None;
            }
            pairs.push((name.into_owned(), value.into_owned()));
        }
        if pairs.len() != route.key_params.len() {
            return None;
        }
        pairs.sort();
        let mut canonical = parts.uri.path().to_owned();
        if !pairs.is_empty() {
            canonical.push('?');
            let query = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(&pairs)
                .finish();
            canonical.push_str(&query);
        }
        (canonical, route.windows)
    };
    let uri: Uri = canonical.parse().ok()?;
    let identity = ctx.live.auth.identity(&parts.headers);
    // The route's pattern is part of `canonical`'s path: a poll and a list never share a key.
    let key = state.cache.route_key(&identity, &canonical).await;
    parts.uri = uri;
    Some(Cached {
        key,
        windows,
        route: Route::TaskRead,
    })
}

//! Cross-site request forgery: a page elsewhere must not make an operator's browser change
//! anything here (retry, purge, silence, reload), even when the browser holds the admin
//! credential (basic auth is sent by the browser on its own) or the server has none.
//!
//! Owns: the double-submit token (a random token in a `SameSite=Strict` cookie, which the
//! console's pages repeat in each form's `_csrf` field or the `X-Switchyard-Csrf` header)
//! and the rule for a state-changing request: one that a browser sent (it carries `Origin`
//! or `Sec-Fetch-Site`) must come from this server's own pages and carry the cookie's
//! token; one from a script (neither header: curl, a deploy job) needs only the admin
//! credential. Works across replicas: no server-side secret. Never: logs a token.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use subtle::ConstantTimeEq;

use super::ApiError;

/// The cookie that holds the token.
pub(crate) const COOKIE: &str = "switchyard_csrf";
/// The header a script on the console's pages repeats it in.
pub(crate) const HEADER: &str = "x-switchyard-csrf";
/// The form field a console form repeats it in.
pub(crate) const FIELD: &str = "_csrf";

/// A new token: 32 bytes from the operating system's generator, as hex; `None` if the
/// generator fails (the page then answers 500 rather than a guessable token).
pub(crate) fn new_token() -> Option<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).ok()?;
    Some(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The well-formed token of the request's cookie, if any.
pub(crate) fn cookie_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim())
        .filter(|t| t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The `Set-Cookie` value that gives a browser `token`.
pub(crate) fn set_cookie(token: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!(
        "{COOKIE}={token}; Path=/; SameSite=Strict; HttpOnly"
    ))
    .ok()
}

/// Whether a browser sent the request: every browser in use marks its requests with
/// `Sec-Fetch-Site`, and a cross-origin POST with `Origin`; scripts send neither.
fn from_browser(headers: &HeaderMap) -> bool {
    headers.contains_key(header::ORIGIN) || headers.contains_key("sec-fetch-site")
}

/// Whether the browser says the request comes from this server's own pages.
fn same_origin(headers: &HeaderMap) -> bool {
    let site_ok = headers
        .get("sec-fetch-site")
        .is_none_or(|v| v.as_bytes() == b"same-origin");
    let origin_ok = match headers.get(header::ORIGIN) {
        None => true,
        Some(origin) => {
            let host = headers.get(header::HOST).map(HeaderValue::as_bytes);
            let origin = origin.as_bytes();
            // `http://host:port` or `https://host:port`, whose host part is this Host.
            let authority = origin
                .strip_prefix(b"http://")
                .or_else(|| origin.strip_prefix(b"https://"));
            matches!((authority, host), (Some(a), Some(h)) if a == h)
        }
    };
    site_ok && origin_ok
}

fn refused(why: &str) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "csrf",
        format!(
            "{why}: a browser may change something here only from switchyard's own pages (reload the page and try again); scripts send no Origin header"
        ),
    )
}

/// Checks a state-changing request. `presented` is the token the request repeats (a form
/// field); else the [`HEADER`] is read.
pub(crate) fn check(headers: &HeaderMap, presented: Option<&str>) -> Result<(), ApiError> {
    if !from_browser(headers) {
        return Ok(());
    }
    if !same_origin(headers) {
        return Err(refused("the request comes from another site"));
    }
    let cookie = cookie_token(headers).ok_or_else(|| refused("no console token cookie"))?;
    let presented = presented
        .or_else(|| headers.get(HEADER).and_then(|v| v.to_str().ok()))
        .ok_or_else(|| refused("the request does not repeat the console token"))?;
    if bool::from(cookie.as_bytes().ct_eq(presented.as_bytes())) {
        Ok(())
    } else {
        Err(refused("the console token does not match"))
    }
}

#[cfg(test)]
#[path = "csrf_test.rs"]
mod tests;

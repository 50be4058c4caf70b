use super::*;

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(*k, HeaderValue::from_str(v).unwrap());
    }
    h
}

const TOKEN: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

#[test]
fn a_script_without_browser_headers_passes_on_its_credential_alone() {
    assert!(check(&HeaderMap::new(), None).is_ok());
}

#[test]
fn a_browser_needs_its_own_origin_and_the_cookies_token_repeated() {
    let cookie = format!("theme=dark; {COOKIE}={TOKEN}");
    let ok = headers(&[
        ("host", "127.0.0.1:9095"),
        ("origin", "http://127.0.0.1:9095"),
        ("sec-fetch-site", "same-origin"),
        ("cookie", &cookie),
    ]);
    assert!(check(&ok, Some(TOKEN)).is_ok());
    let mut by_header = ok.clone();
    by_header.insert(HEADER, HeaderValue::from_static(TOKEN));
    assert!(check(&by_header, None).is_ok());

    let refused = |h: &HeaderMap, t: Option<&str>| check(h, t).unwrap_err().code();
    assert_eq!(refused(&ok, None), "csrf", "no token repeated");
    assert_eq!(
        refused(&ok, Some(&TOKEN.replace('0', "1"))),
        "csrf",
        "another token"
    );
    let no_cookie = headers(&[("host", "h:1"), ("sec-fetch-site", "same-origin")]);
    assert_eq!(refused(&no_cookie, Some(TOKEN)), "csrf");
    let elsewhere = headers(&[
        ("host", "127.0.0.1:9095"),
        ("origin", "https://evil.example"),
        ("cookie", &cookie),
    ]);
    assert_eq!(refused(&elsewhere, Some(TOKEN)), "csrf", "another origin");
    let cross = headers(&[("sec-fetch-site", "cross-site"), ("cookie", &cookie)]);
    assert_eq!(refused(&cross, Some(TOKEN)), "csrf", "another site");
}

#[test]
fn tokens_are_random_hex_and_a_malformed_cookie_is_none() {
    let (a, b) = (new_token().unwrap(), new_token().unwrap());
    assert_ne!(a, b);
    assert_eq!(a.len(), 64);
    let c = format!("{COOKIE}={a}");
    assert_eq!(cookie_token(&headers(&[("cookie", &c)])), Some(a.as_str()));
    let bad = format!("{COOKIE}=not-hex");
    assert_eq!(cookie_token(&headers(&[("cookie", &bad)])), None);
    let set = set_cookie(&a).unwrap();
    let set = set.to_str().unwrap();
    assert!(
        set.contains("SameSite=Strict") && set.contains("HttpOnly"),
        "{set}"
    );
}

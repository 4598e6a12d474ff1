//! The web app and the embeddable components: static files under
//! `api/web/`, embedded in the binary (rust-embed; a debug build reads
//! them from disk, so editing a page needs no rebuild).
//!
//! - `GET /` is the app's one page (`index.html`, never cached: it names
//!   the current build).
//! - `GET /assets/{build}/{*path}` serves every other file. `build` is a
//!   hash of all the files, so an asset's URL changes whenever any file
//!   does and every asset is cached for a year (`immutable`). ES modules
//!   import each other by relative paths under the same prefix.
//! - Answers are compressed with brotli or gzip as the browser accepts,
//!   each file compressed once, on first request, and kept.
//! - Every answer carries a strict Content-Security-Policy: scripts,
//!   styles, fonts and connections from this origin only, no inline script
//!   or style, no framing (the components are embedded as scripts, not
//!   frames).
//!
//! No Node build step: the app is plain ES modules; the vendored
//! libraries in `web/vendor/` are committed with their versions and
//! licences (`web/vendor/README.md`).

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::sync::{LazyLock, OnceLock};

use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use crate::error::ApiError;

#[derive(rust_embed::Embed)]
#[folder = "web/"]
#[exclude = "*.test.mjs"]
struct Files;

/// The Content-Security-Policy of every app answer.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; font-src 'self'; connect-src 'self'; object-src 'none'; \
    base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Where `index.html` names the asset prefix.
const ASSETS_PLACEHOLDER: &str = "{{assets}}";

/// Where `index.html` lists the app's modules to preload: every module of
/// `lib/`, `pages/` and `vendor/` (`app.js` imports them all), so the
/// browser fetches them in one wave instead of one wave per import depth
/// (three waves, about 100 ms of a 0.5 s Overview on loopback).
const PRELOAD_PLACEHOLDER: &str = "{{preload}}";

/// A file and its compressed forms, as `Bytes` so that an answer shares
/// them instead of copying.
struct Asset {
    bytes: Bytes,
    content_type: &'static str,
    gzip: OnceLock<Bytes>,
    brotli: OnceLock<Bytes>,
}

struct Site {
    /// A hash over every file's path and SHA-256, in hex.
    build: String,
    files: HashMap<String, Asset>,
    index: Asset,
}

static SITE: LazyLock<Site> = LazyLock::new(|| {
    let mut names: Vec<String> = Files::iter().map(Cow::into_owned).collect();
    names.sort();
    // Only this binary compares build ids: a std hash is enough.
    let mut hasher = std::hash::DefaultHasher::new();
    let mut files = HashMap::new();
    for name in names {
        let Some(file) = Files::get(&name) else {
            continue;
        };
        name.hash(&mut hasher);
        file.metadata.sha256_hash().hash(&mut hasher);
        files.insert(name.clone(), asset(&name, file.data));
    }
    let build = format!("{:016x}", hasher.finish());
    let mut modules: Vec<&String> = files
        .keys()
        .filter(|n| {
            ["lib/", "pages/", "vendor/"].iter().any(|d| n.starts_with(d))
                && (n.ends_with(".js") || n.ends_with(".mjs"))
                && !n.contains(".test.")
        })
        .collect();
    modules.sort();
    let preload: String = modules
        .iter()
        .map(|n| format!("<link rel=\"modulepreload\" href=\"/assets/{build}/{n}\">\n"))
        .collect();
    let index = files
        .get("index.html")
        .map(|a| String::from_utf8_lossy(&a.bytes).into_owned())
        .unwrap_or_default()
        .replace(PRELOAD_PLACEHOLDER, preload.trim_end())
        .replace(ASSETS_PLACEHOLDER, &format!("/assets/{build}"));
    Site {
        index: asset("index.html", Cow::Owned(index.into_bytes())),
        build,
        files,
    }
});

fn asset(name: &str, bytes: Cow<'static, [u8]>) -> Asset {
    Asset {
        bytes: match bytes {
            Cow::Borrowed(b) => Bytes::from_static(b),
            Cow::Owned(v) => Bytes::from(v),
        },
        content_type: content_type(name),
        gzip: OnceLock::new(),
        brotli: OnceLock::new(),
    }
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next().unwrap_or_default() {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "ts" => "text/plain; charset=utf-8",
        "md" | "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// The current build id (the asset prefix is `/assets/<build>`).
#[cfg(test)]
fn build() -> &'static str {
    &SITE.build
}

/// `GET /`: the app.
pub async fn index(headers: HeaderMap) -> Response {
    serve(&SITE.index, &headers, "no-cache")
}

/// `GET /assets/{build}/{*path}`.
pub async fn assets(
    Path((build, path)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let site = &*SITE;
    let file = site
        .files
        .get(&path)
        .filter(|_| build == site.build && path != "index.html")
        .ok_or_else(|| ApiError::not_found("no such file in this build of the app"))?;
    Ok(serve(file, &headers, "public, max-age=31536000, immutable"))
}

/// `GET /embed/{*path}`: the same files at stable addresses, for portals
/// that load the components (`/embed/beacon.js`) from another origin:
/// cached for five minutes (a new build reaches them soon), and readable
/// cross-origin (module scripts are fetched with CORS; the router's CORS
/// layer answers for `/embed/`).
pub async fn embed(Path(path): Path<String>, headers: HeaderMap) -> Result<Response, ApiError> {
    let file = SITE
        .files
        .get(&path)
        .filter(|_| path != "index.html")
        .ok_or_else(|| ApiError::not_found("no such file"))?;
    let mut response = serve(file, &headers, "public, max-age=300");
    response.headers_mut().insert(
        header::HeaderName::from_static("cross-origin-resource-policy"),
        HeaderValue::from_static("cross-origin"),
    );
    Ok(response)
}

fn serve(file: &Asset, headers: &HeaderMap, cache: &'static str) -> Response {
    let accepts = |coding: &str| {
        headers
            .get_all(header::ACCEPT_ENCODING)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|c| {
                let mut parts = c.trim().split(';');
                parts.next() == Some(coding)
                    && !parts.any(|p| matches!(p.trim(), "q=0" | "q=0.0" | "q=0.00" | "q=0.000"))
            })
    };
    // Small files go as they are; images and fonts are compressed already.
    let compressible = file.bytes.len() > 512 && !file.content_type.starts_with("image/png")
        && !file.content_type.starts_with("font/");
    let (body, encoding) = if compressible && accepts("br") {
        (file.brotli.get_or_init(|| brotli(&file.bytes).into()).clone(), Some("br"))
    } else if compressible && accepts("gzip") {
        (file.gzip.get_or_init(|| gzip(&file.bytes).into()).clone(), Some("gzip"))
    } else {
        (file.bytes.clone(), None)
    };
    let mut response = (StatusCode::OK, body).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(file.content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    if let Some(encoding) = encoding {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static(encoding));
    }
    security_headers(h);
    response
}

/// The headers every app answer carries.
fn security_headers(h: &mut HeaderMap) {
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(bytes);
    encoder.finish().unwrap_or_default()
}

fn brotli(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let params = brotli::enc::BrotliEncoderParams {
        quality: 11,
        lgwin: 22,
        ..Default::default()
    };
    let _ = brotli::BrotliCompress(&mut &bytes[..], &mut out, &params);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_has_a_known_type_and_the_index_names_the_build() {
        for (name, file) in &SITE.files {
            assert_ne!(file.content_type, "application/octet-stream", "{name}");
        }
        let index = String::from_utf8_lossy(&SITE.index.bytes);
        assert!(index.contains(&format!("/assets/{}/", build())), "{index}");
        assert!(!index.contains(ASSETS_PLACEHOLDER));
    }

    #[test]
    fn compression_round_trips() {
        let text = "beacon ".repeat(1000);
        let mut out = Vec::new();
        let compressed = brotli(text.as_bytes());
        brotli::BrotliDecompress(&mut &compressed[..], &mut out).expect("br");
        assert_eq!(out, text.as_bytes());
        let zipped = gzip(text.as_bytes());
        let mut d = flate2::read::GzDecoder::new(&zipped[..]);
        let mut out = String::new();
        std::io::Read::read_to_string(&mut d, &mut out).expect("gzip");
        assert_eq!(out, text);
    }
}

//! The `[ui]` section: what portcullis's own pages look like.
//!
//! ```toml
//! [ui]
//! title = "Smith family"               # shown on every page
//! logo_file = "/etc/portcullis/logo.svg" # read at start, inlined
//! accent_color = "#2e7d32"
//! templates_dir = "/etc/portcullis/templates" # replaces built-in templates
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use super::{Pages, TEMPLATES};
use crate::settings::ConfigError;

/// Largest logo inlined into every page.
pub const MAX_LOGO_BYTES: u64 = 64 * 1024;
/// Largest template file read from `ui.templates_dir`.
const MAX_TEMPLATE_BYTES: u64 = 256 * 1024;
const DEFAULT_TITLE: &str = "portcullis";
const DEFAULT_ACCENT: &str = "#3558d4";

/// The section as written.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawUi {
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub logo_file: Option<PathBuf>,
    #[serde(default)]
    pub accent_color: Option<String>,
    #[serde(default)]
    pub templates_dir: Option<PathBuf>,
}

/// The section, checked: the templates compiled and tried, the logo read.
#[derive(Clone, Debug, Serialize)]
pub struct UiConfig {
    pub title: String,
    pub logo_file: Option<PathBuf>,
    pub accent_color: String,
    pub templates_dir: Option<PathBuf>,
    #[serde(skip)]
    pub pages: Arc<Pages>,
}

impl Default for UiConfig {
    fn default() -> UiConfig {
        validate(RawUi::default()).expect("the built-in templates compile")
    }
}

/// Checks the section: a title of one line, a colour like `#2e7d32`, a
/// logo that can be read and is small, templates that parse and render.
pub fn validate(raw: RawUi) -> Result<UiConfig, ConfigError> {
    let title = raw.title.map(|t| t.trim().to_string()).unwrap_or_else(|| DEFAULT_TITLE.to_string());
    if title.is_empty() || title.chars().count() > 100 || title.chars().any(char::is_control) {
        return Err(ConfigError::invalid("ui.title", "must be one line of 1 to 100 characters"));
    }
    let accent_color = raw.accent_color.map(|c| c.trim().to_ascii_lowercase()).unwrap_or_else(|| DEFAULT_ACCENT.to_string());
    if !is_hex_color(&accent_color) {
        return Err(ConfigError::invalid(
            "ui.accent_color",
            format!("`{accent_color}` is not a colour like #2e7d32 (# and 3 or 6 hexadecimal digits)"),
        ));
    }
    let logo = raw.logo_file.as_deref().map(read_logo).transpose()?;
    let mut templates: Vec<(String, String)> = TEMPLATES.iter().map(|(n, s)| (n.to_string(), s.to_string())).collect();
    if let Some(dir) = &raw.templates_dir {
        read_templates(dir, &mut templates)?;
    }
    let pages = Pages::new(templates, title.clone(), logo, accent_color.clone())
        .map_err(|(name, reason)| ConfigError::invalid("ui.templates_dir", format!("template `{name}`: {reason}")))?;
    pages.check().map_err(|e| ConfigError::invalid("ui.templates_dir", e.to_string()))?;
    Ok(UiConfig { title, logo_file: raw.logo_file, accent_color, templates_dir: raw.templates_dir, pages: Arc::new(pages) })
}

fn is_hex_color(c: &str) -> bool {
    c.strip_prefix('#').is_some_and(|h| matches!(h.len(), 3 | 6) && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The logo as a `data:` URI.
fn read_logo(path: &Path) -> Result<String, ConfigError> {
    let key = "ui.logo_file";
    let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).unwrap_or_default();
    let mime = match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "svg" => "image/svg+xml",
        _ => return Err(ConfigError::invalid(key, format!("{}: not a .png, .jpg, .gif, .webp or .svg file", path.display()))),
    };
    let too_big = || ConfigError::invalid(key, format!("{}: larger than {} KiB", path.display(), MAX_LOGO_BYTES / 1024));
    let meta = std::fs::metadata(path).map_err(|e| ConfigError::invalid(key, format!("{}: {e}", path.display())))?;
    if meta.len() > MAX_LOGO_BYTES {
        return Err(too_big());
    }
    let bytes = std::fs::read(path).map_err(|e| ConfigError::invalid(key, format!("{}: {e}", path.display())))?;
    if bytes.len() as u64 > MAX_LOGO_BYTES {
        return Err(too_big());
    }
    Ok(format!("data:{mime};base64,{}", STANDARD.encode(bytes)))
}

/// Replaces built-in templates by the files of the same name in `dir`; a
/// file with another name is an error (a misspelt name would otherwise be
/// silently ignored).
fn read_templates(dir: &Path, templates: &mut [(String, String)]) -> Result<(), ConfigError> {
    let key = "ui.templates_dir";
    let entries = std::fs::read_dir(dir).map_err(|e| ConfigError::invalid(key, format!("{}: {e}", dir.display())))?;
    let known: Vec<&str> = TEMPLATES.iter().map(|(n, _)| *n).collect();
    let mut found = 0;
    for entry in entries {
        let entry = entry.map_err(|e| ConfigError::invalid(key, format!("{}: {e}", dir.display())))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !entry.path().is_file() {
            continue;
        }
        let Some(slot) = templates.iter_mut().find(|(n, _)| *n == name) else {
            return Err(ConfigError::invalid(
                key,
                format!("{}: `{name}` is not one of portcullis's templates ({})", dir.display(), known.join(", ")),
            ));
        };
        let path = entry.path();
        let len = entry.metadata().map(|m| m.len()).unwrap_or(0);
        if len > MAX_TEMPLATE_BYTES {
            return Err(ConfigError::invalid(key, format!("{}: larger than {} KiB", path.display(), MAX_TEMPLATE_BYTES / 1024)));
        }
        slot.1 = std::fs::read_to_string(&path).map_err(|e| ConfigError::invalid(key, format!("{}: {e}", path.display())))?;
        found += 1;
    }
    if found == 0 {
        return Err(ConfigError::invalid(key, format!("{} holds none of portcullis's templates ({})", dir.display(), known.join(", "))));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(raw: RawUi) -> String {
        validate(raw).unwrap_err().to_string()
    }

    #[test]
    fn defaults() {
        let ui = validate(RawUi::default()).unwrap();
        assert_eq!((ui.title.as_str(), ui.accent_color.as_str()), (DEFAULT_TITLE, DEFAULT_ACCENT));
    }

    #[test]
    fn accent_color_must_be_a_hex_colour() {
        for bad in ["red", "#12345", "#ggg", "#123456;}body{", "url(x)"] {
            let e = err(RawUi { accent_color: Some(bad.into()), ..Default::default() });
            assert!(e.contains("`ui.accent_color`"), "{bad}: {e}");
        }
        for good in ["#abc", "#A1B2C3"] {
            validate(RawUi { accent_color: Some(good.into()), ..Default::default() }).unwrap();
        }
    }

    #[test]
    fn title_is_one_line() {
        for bad in ["", "a\nb", &"x".repeat(101)] {
            let e = err(RawUi { title: Some(bad.into()), ..Default::default() });
            assert!(e.contains("`ui.title`"), "{e}");
        }
    }

    #[test]
    fn logo_is_read_inlined_and_limited() {
        let dir = tempfile::tempdir().unwrap();
        let svg = dir.path().join("logo.svg");
        std::fs::write(&svg, "<svg xmlns='http://www.w3.org/2000/svg'/>").unwrap();
        let ui = validate(RawUi { logo_file: Some(svg), ..Default::default() }).unwrap();
        let html = ui.pages.render("message.html", "t", 200, "n", minijinja::context! { message => "m" }).unwrap();
        assert!(html.contains("src=\"data:image/svg+xml;base64,"), "{html}");

        let big = dir.path().join("big.png");
        std::fs::write(&big, vec![0u8; MAX_LOGO_BYTES as usize + 1]).unwrap();
        assert!(err(RawUi { logo_file: Some(big), ..Default::default() }).contains("`ui.logo_file`"));
        let missing = dir.path().join("missing.png");
        assert!(err(RawUi { logo_file: Some(missing), ..Default::default() }).contains("`ui.logo_file`"));
        let text = dir.path().join("logo.txt");
        std::fs::write(&text, "x").unwrap();
        assert!(err(RawUi { logo_file: Some(text), ..Default::default() }).contains("`ui.logo_file`"));
    }

    #[test]
    fn templates_dir_replaces_and_is_checked_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let raw = || RawUi { templates_dir: Some(dir.path().to_path_buf()), ..Default::default() };
        assert!(err(raw()).contains("holds none"), "an empty directory");

        std::fs::write(dir.path().join("message.html"), "{% extends \"base.html\" %}{% block content %}<p class=mine>{{ message }}</p>{% endblock %}").unwrap();
        let ui = validate(raw()).unwrap();
        let html = ui.pages.render("message.html", "t", 200, "n", minijinja::context! { message => "<b>" }).unwrap();
        assert!(html.contains("<p class=mine>&lt;b&gt;</p>"), "{html}");

        std::fs::write(dir.path().join("message.html"), "{% if %}").unwrap();
        let e = err(raw());
        assert!(e.contains("`ui.templates_dir`") && e.contains("message.html"), "does not parse: {e}");

        std::fs::write(dir.path().join("message.html"), "{% extends \"layout.html\" %}").unwrap();
        let e = err(raw());
        assert!(e.contains("`ui.templates_dir`") && e.contains("layout.html"), "names a missing template: {e}");

        std::fs::write(dir.path().join("message.html"), "{{ mesage }}").unwrap();
        let e = err(raw());
        assert!(e.contains("`ui.templates_dir`") && e.contains("message.html"), "a misspelt value: {e}");

        std::fs::remove_file(dir.path().join("message.html")).unwrap();
        std::fs::write(dir.path().join("mesage.html"), "x").unwrap();
        let e = err(raw());
        assert!(e.contains("`ui.templates_dir`") && e.contains("mesage.html"), "an unknown name: {e}");
    }
}

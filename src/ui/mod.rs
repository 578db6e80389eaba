//! The look of portcullis's own pages: built-in templates in
//! `ui/templates/`, the `[ui]` section's title, logo and accent colour,
//! and templates of one's own from `ui.templates_dir` (its section in
//! [`config`]).
//!
//! Every page is rendered by [`Pages::render`] with a template that
//! extends `base.html`; values are escaped by the template engine
//! (minijinja, auto-escaping `.html`). Pages carry no script and load
//! nothing from elsewhere: the stylesheet is inline, allowed by a nonce in
//! the page's `Content-Security-Policy` ([`content_security_policy`]), and
//! the logo is a `data:` URI.

pub mod config;

use minijinja::{Environment, Value, context};

pub use config::{RawUi, UiConfig};

/// The built-in templates, by name. A `ui.templates_dir` may replace any of
/// them with a file of the same name.
///
/// A new page: its template here (extending `base.html`), a sample of its
/// values in [`Pages::check`], and the server answers with
/// `respond::html(app, status, title, "its.html", context! { ... })`.
pub const TEMPLATES: [(&str, &str); 4] = [
    ("base.html", include_str!("templates/base.html")),
    ("message.html", include_str!("templates/message.html")),
    ("confirm_logout.html", include_str!("templates/confirm_logout.html")),
    ("tokens.html", include_str!("templates/tokens.html")),
];

/// The `Content-Security-Policy` of a page whose stylesheet carries
/// `nonce`: nothing may load or run but that stylesheet and `data:`
/// images (the logo), and no other site may frame the page.
pub fn content_security_policy(nonce: &str) -> String {
    format!(
        "default-src 'none'; style-src 'nonce-{nonce}'; img-src data:; base-uri 'none'; frame-ancestors 'none'"
    )
}

/// The templates, compiled once at start, with the page-wide values.
#[derive(Debug)]
pub struct Pages {
    env: Environment<'static>,
    /// `title`, `logo` and `accent_color`, as the templates see them.
    ui: Value,
}

/// A page could not be rendered (a template of `ui.templates_dir` that
/// fails on some values).
#[derive(Debug, thiserror::Error)]
#[error("page `{template}` could not be rendered: {reason}")]
pub struct RenderError {
    pub template: String,
    pub reason: String,
}

impl Pages {
    /// `templates` are the built-in ones with any replacements; each must
    /// parse (the error names the template).
    fn new(
        templates: Vec<(String, String)>,
        title: String,
        logo: Option<String>,
        accent_color: String,
    ) -> Result<Pages, (String, String)> {
        let mut env = Environment::new();
        // A misspelt variable is an error at start (see `check`), not an
        // empty space on a page.
        env.set_undefined_behavior(minijinja::UndefinedBehavior::SemiStrict);
        // As minijinja's own, but without escaping `/` (harmless in HTML):
        // addresses in links stay as readable in the page's source as on it.
        env.set_formatter(|out, state, value| match value.as_str() {
            Some(text) if !value.is_safe() && matches!(state.auto_escape(), minijinja::AutoEscape::Html) => {
                out.write_str(&html_escape(text)).map_err(|_| minijinja::Error::new(minijinja::ErrorKind::WriteFailure, "cannot write"))
            }
            _ => minijinja::escape_formatter(out, state, value),
        });
        for (name, source) in templates {
            env.add_template_owned(name.clone(), source).map_err(|e| (name, describe(&e)))?;
        }
        Ok(Pages { env, ui: context! { title, logo, accent_color } })
    }

    /// Renders every built-in page once with sample values, so a template
    /// that names a missing one or fails on its values stops the start.
    fn check(&self) -> Result<(), RenderError> {
        let samples = [
            ("message.html", context! { message => "Sample message.", link => context! { href => "/oauth2/start", text => "Sign in" } }),
            ("message.html", context! { message => "Sample message." }),
            ("confirm_logout.html", context! { message => "Sign out?", token => "sample", button => "Sign out" }),
            ("message.html", context! { message => "Signed in.", link => context! { href => "/oauth2/logout", text => "Sign out" }, tokens => "/oauth2/tokens" }),
            (
                "tokens.html",
                context! {
                    message => "Signed in as sample.",
                    csrf => "sample",
                    made => context! { name => "phone", token => "pcat_sample" },
                    rows => vec![context! { id => "sample", name => "phone", created => "2026-01-01", last_used => "never", expires => "never", hosts => vec!["photos.example.com"] }],
                },
            ),
            ("tokens.html", context! { message => "Signed in as sample.", csrf => "sample", rows => Vec::<Value>::new() }),
        ];
        for (template, values) in samples {
            self.render(template, "Sample", 200, "c2FtcGxl", values)?;
        }
        Ok(())
    }

    /// The page `template` titled `title`, for an answer with `status`:
    /// `values` are the template's own, besides `title`, `status`, `nonce`
    /// (for the stylesheet) and `ui` (`title`, `logo`, `accent_color`).
    pub fn render(&self, template: &str, title: &str, status: u16, nonce: &str, values: Value) -> Result<String, RenderError> {
        let fail = |e: minijinja::Error| RenderError { template: template.to_string(), reason: describe(&e) };
        let page = self.env.get_template(template).map_err(fail)?;
        page.render(context! { title, status, nonce, ui => self.ui.clone(), ..values }).map_err(fail)
    }
}

/// Text made safe for HTML, in element content and quoted attributes.
fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A template error with where it happened.
fn describe(e: &minijinja::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pages() -> Pages {
        let templates = TEMPLATES.iter().map(|(n, s)| (n.to_string(), s.to_string())).collect();
        Pages::new(templates, "Home <b>".into(), None, "#0b57d0".into()).unwrap()
    }

    #[test]
    fn values_are_escaped() {
        let html = pages()
            .render("message.html", "<script>alert(1)</script>", 400, "n0nce", context! { message => "a \"quoted\" <i>x</i> & y '", title => "not the title" })
            .unwrap();
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{html}");
        assert!(html.contains("a &quot;quoted&quot; &lt;i&gt;x&lt;/i&gt; &amp; y &#39;"), "{html}");
        assert!(html.contains("Home &lt;b&gt;"), "{html}");
        assert!(!html.contains("<script") && !html.contains("<i>") && !html.contains("<b>"), "{html}");
        assert!(html.contains("<style nonce=\"n0nce\">"), "{html}");
        assert!(!html.contains("not the title"), "a page's values cannot replace the page-wide ones: {html}");
        assert!(html.contains("--accent: #0b57d0;"), "{html}");
    }

    #[test]
    fn the_built_in_pages_pass_the_start_check() {
        pages().check().unwrap();
    }
}

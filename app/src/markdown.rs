//! The formatting people type in chat: a safe subset of Markdown, parsed into a small tree
//! that the page renders as elements and text nodes, never as HTML. The server and the browser
//! run this same code, so a message looks the same rendered on the server and after hydration.
//!
//! Blocks: paragraphs (line breaks kept), fenced code blocks (```), quotes (`> `), bulleted
//! (`- `, `* `) and numbered (`1. `) lists. Inline: `code`, **strong**, *emphasis* or
//! _emphasis_, ~~strike~~, links `[text](url)` and bare `https://…` addresses. A link is one
//! only for `http:`, `https:` and `mailto:` addresses; anything else (`javascript:`, `data:`)
//! stays the text that was typed. Markup that does not close is shown as typed.

/// A block of a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Block {
    Paragraph(Vec<Inline>),
    Code(String),
    Quote(Vec<Inline>),
    Bullets(Vec<Vec<Inline>>),
    Numbered(Vec<Vec<Inline>>),
}

/// A run of text within a block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Inline {
    Text(String),
    Code(String),
    Strong(Vec<Inline>),
    Emphasis(Vec<Inline>),
    Strike(Vec<Inline>),
    Link { href: String, text: Vec<Inline> },
}

/// Parses a message's text.
pub fn parse(content: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut lines = content.lines().peekable();
    let mut paragraph: Vec<&str> = Vec::new();
    let flush = |paragraph: &mut Vec<&str>, blocks: &mut Vec<Block>| {
        if !paragraph.is_empty() {
            blocks.push(Block::Paragraph(inline(&paragraph.join("\n"))));
            paragraph.clear();
        }
    };
    while let Some(line) = lines.next() {
        if let Some(rest) = line.trim_start().strip_prefix("```") {
            let _language = rest.trim();
            let mut code = Vec::new();
            let mut closed = false;
            for line in lines.by_ref() {
                if line.trim_start().starts_with("```") {
                    closed = true;
                    break;
                }
                code.push(line);
            }
            if closed || !code.is_empty() {
                flush(&mut paragraph, &mut blocks);
                blocks.push(Block::Code(code.join("\n")));
                continue;
            }
            paragraph.push(line);
        } else if let Some(quoted) = quote_line(line) {
            flush(&mut paragraph, &mut blocks);
            let mut quote = vec![quoted];
            while let Some(next) = lines.peek().and_then(|l| quote_line(l)) {
                quote.push(next);
                lines.next();
            }
            blocks.push(Block::Quote(inline(&quote.join("\n"))));
        } else if let Some(item) = bullet(line) {
            flush(&mut paragraph, &mut blocks);
            blocks.push(Block::Bullets(list_items(item, &mut lines, bullet)));
        } else if let Some(item) = numbered(line) {
            flush(&mut paragraph, &mut blocks);
            blocks.push(Block::Numbered(list_items(item, &mut lines, numbered)));
        } else if line.trim().is_empty() {
            flush(&mut paragraph, &mut blocks);
        } else {
            paragraph.push(line);
        }
    }
    flush(&mut paragraph, &mut blocks);
    blocks
}

/// A list's items: `first`, then every following line that `item` reads as one.
fn list_items<'a>(
    first: &str,
    lines: &mut std::iter::Peekable<std::str::Lines<'a>>,
    item: fn(&'a str) -> Option<&'a str>,
) -> Vec<Vec<Inline>> {
    let mut items = vec![inline(first)];
    while let Some(next) = lines.peek().and_then(|l| item(l)) {
        items.push(inline(next));
        lines.next();
    }
    items
}

fn quote_line(line: &str) -> Option<&str> {
    let rest = line.strip_prefix('>')?;
    Some(rest.strip_prefix(' ').unwrap_or(rest))
}

fn bullet(line: &str) -> Option<&str> {
    line.strip_prefix("- ")
        .or_else(|| line.strip_prefix("* "))
        .filter(|item| !item.trim().is_empty())
}

fn numbered(line: &str) -> Option<&str> {
    let digits = line.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || digits > 3 {
        return None;
    }
    line[digits..]
        .strip_prefix(". ")
        .filter(|item| !item.trim().is_empty())
}

/// Whether an address may be a link: the web and mail, nothing that runs or embeds.
pub fn safe_href(href: &str) -> bool {
    let lower = href.trim().to_ascii_lowercase();
    let allowed = ["http://", "https://", "mailto:"]
        .iter()
        .any(|scheme| lower.starts_with(scheme) && lower.len() > scheme.len());
    allowed && !href.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Parses inline markup.
pub fn inline(text: &str) -> Vec<Inline> {
    let mut out = Vec::new();
    let mut plain = String::new();
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if let Some((node, after)) = markup_at(rest, plain.chars().next_back()) {
            if !plain.is_empty() {
                out.push(Inline::Text(std::mem::take(&mut plain)));
            }
            out.push(node);
            rest = after;
        } else {
            plain.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    if !plain.is_empty() {
        out.push(Inline::Text(plain));
    }
    out
}

/// The markup starting at the beginning of `text`, and what follows it.
fn markup_at(text: &str, before: Option<char>) -> Option<(Inline, &str)> {
    let first = text.chars().next()?;
    match first {
        '`' => {
            let end = text[1..].find('`')? + 1;
            (end > 1).then(|| (Inline::Code(text[1..end].to_string()), &text[end + 1..]))
        }
        '*' if text.starts_with("**") => {
            delimited(text, "**").map(|(inner, after)| (Inline::Strong(inline(inner)), after))
        }
        '~' if text.starts_with("~~") => {
            delimited(text, "~~").map(|(inner, after)| (Inline::Strike(inline(inner)), after))
        }
        '*' => delimited(text, "*").map(|(inner, after)| (Inline::Emphasis(inline(inner)), after)),
        // `snake_case_names` are not emphasis: `_` opens only after a non-word character.
        '_' if !before.is_some_and(char::is_alphanumeric) => delimited(text, "_")
            .filter(|(_, after)| !after.starts_with(char::is_alphanumeric))
            .map(|(inner, after)| (Inline::Emphasis(inline(inner)), after)),
        '[' => link(text),
        'h' if !before.is_some_and(char::is_alphanumeric) => bare_url(text),
        _ => None,
    }
}

/// `<mark>inner<mark>` at the start of `text`: the inner text (not starting or ending with a
/// space, not empty) and what follows.
fn delimited<'a>(text: &'a str, mark: &str) -> Option<(&'a str, &'a str)> {
    let body = &text[mark.len()..];
    if body.starts_with(char::is_whitespace) || body.starts_with(mark) {
        return None;
    }
    let end = body.find(mark)?;
    let inner = &body[..end];
    (!inner.is_empty() && !inner.ends_with(char::is_whitespace))
        .then(|| (inner, &body[end + mark.len()..]))
}

/// `[text](href)` with a safe address.
fn link(text: &str) -> Option<(Inline, &str)> {
    let close = text.find("](")?;
    let label = &text[1..close];
    let after_label = &text[close + 2..];
    let end = after_label.find(')')?;
    let href = &after_label[..end];
    if label.is_empty() || label.contains('[') || !safe_href(href) {
        return None;
    }
    Some((
        Inline::Link {
            href: href.to_string(),
            text: inline(label),
        },
        &after_label[end + 1..],
    ))
}

/// A bare `http(s)://…` address, without trailing punctuation.
fn bare_url(text: &str) -> Option<(Inline, &str)> {
    if !(text.starts_with("https://") || text.starts_with("http://")) {
        return None;
    }
    let end = text
        .find(|c: char| c.is_whitespace() || c == '<' || c == '>' || c == '"')
        .unwrap_or(text.len());
    let url = text[..end].trim_end_matches(['.', ',', ':', ';', '!', '?', ')', '\'']);
    safe_href(url).then(|| {
        (
            Inline::Link {
                href: url.to_string(),
                text: vec![Inline::Text(url.to_string())],
            },
            &text[url.len()..],
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Inline {
        Inline::Text(s.into())
    }

    #[test]
    fn emphasis_code_and_strike() {
        assert_eq!(
            inline("a **b** *c* _d_ ~~e~~ `f *g*`"),
            vec![
                text("a "),
                Inline::Strong(vec![text("b")]),
                text(" "),
                Inline::Emphasis(vec![text("c")]),
                text(" "),
                Inline::Emphasis(vec![text("d")]),
                text(" "),
                Inline::Strike(vec![text("e")]),
                text(" "),
                Inline::Code("f *g*".into()),
            ]
        );
        // Unclosed or spaced markers, and snake_case, are text.
        assert_eq!(inline("2 * 3 * 4"), vec![text("2 * 3 * 4")]);
        assert_eq!(inline("**open"), vec![text("**open")]);
        assert_eq!(inline("snake_case_name"), vec![text("snake_case_name")]);
        assert_eq!(inline("``"), vec![text("``")]);
    }

    #[test]
    fn only_web_and_mail_addresses_become_links() {
        assert_eq!(
            inline("see [docs](https://example.org/a?b=1) or https://x.io/p."),
            vec![
                text("see "),
                Inline::Link {
                    href: "https://example.org/a?b=1".into(),
                    text: vec![text("docs")],
                },
                text(" or "),
                Inline::Link {
                    href: "https://x.io/p".into(),
                    text: vec![text("https://x.io/p")],
                },
                text("."),
            ]
        );
        for attack in [
            "[x](javascript:alert(1))",
            "[x](JAVASCRIPT:alert(1))",
            "[x](data:text/html,<b>)",
            "[x]( javascript:alert(1))",
            "[x](vbscript:msgbox)",
            "[x](//evil.example)",
        ] {
            assert!(
                inline(attack)
                    .iter()
                    .all(|node| !matches!(node, Inline::Link { .. })),
                "{attack}"
            );
        }
        assert!(safe_href("mailto:ana@example.org"));
        assert!(!safe_href("https://"));
        assert!(!safe_href("https://a b"));
    }

    #[test]
    fn blocks_quotes_lists_and_code() {
        let blocks = parse("hello\nworld\n\n> quoted\n> more\n- one\n- two\n1. first\n2. second\n```rust\nlet x = 1;\n<b>\n```\nafter");
        assert_eq!(
            blocks,
            vec![
                Block::Paragraph(vec![text("hello\nworld")]),
                Block::Quote(vec![text("quoted\nmore")]),
                Block::Bullets(vec![vec![text("one")], vec![text("two")]]),
                Block::Numbered(vec![vec![text("first")], vec![text("second")]]),
                Block::Code("let x = 1;\n<b>".into()),
                Block::Paragraph(vec![text("after")]),
            ]
        );
        // An unclosed fence runs to the end; a lone fence is text.
        assert_eq!(parse("```\ncode"), vec![Block::Code("code".into())]);
        assert_eq!(parse("```"), vec![Block::Paragraph(vec![text("```")])]);
        // Raw HTML is text.
        assert_eq!(
            parse("<img src=x onerror=alert(1)>"),
            vec![Block::Paragraph(vec![text("<img src=x onerror=alert(1)>")])]
        );
    }
}

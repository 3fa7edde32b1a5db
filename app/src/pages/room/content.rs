//! A message's text as elements: the [`markdown`](crate::markdown) tree rendered with text
//! nodes only (never HTML), links that open safely in a new tab, and the reader's name
//! highlighted where someone mentions them.

use crate::markdown::{self, Block, Inline};
use crate::mention::mention_spans;
use leptos::prelude::*;

#[component]
pub fn MessageContent(
    content: String,
    /// The reader's name, when the message is someone else's.
    my_name: Option<String>,
) -> impl IntoView {
    let blocks = markdown::parse(&content);
    let name = my_name.unwrap_or_default();
    blocks
        .into_iter()
        .map(|block| block_view(block, &name))
        .collect_view()
        .into_any()
}

fn block_view(block: Block, name: &str) -> AnyView {
    match block {
        Block::Paragraph(inlines) => view! { <p>{inlines_view(inlines, name)}</p> }.into_any(),
        Block::Code(code) => view! { <pre><code>{code}</code></pre> }.into_any(),
        Block::Quote(inlines) => {
            view! { <blockquote>{inlines_view(inlines, name)}</blockquote> }.into_any()
        }
        Block::Bullets(items) => view! { <ul>{items_view(items, name)}</ul> }.into_any(),
        Block::Numbered(items) => view! { <ol>{items_view(items, name)}</ol> }.into_any(),
    }
}

fn items_view(items: Vec<Vec<Inline>>, name: &str) -> Vec<AnyView> {
    items
        .into_iter()
        .map(|item| view! { <li>{inlines_view(item, name)}</li> }.into_any())
        .collect()
}

fn inlines_view(inlines: Vec<Inline>, name: &str) -> Vec<AnyView> {
    inlines
        .into_iter()
        .map(|inline| inline_view(inline, name))
        .collect()
}

fn inline_view(inline: Inline, name: &str) -> AnyView {
    match inline {
        Inline::Text(text) => text_view(text, name),
        Inline::Code(code) => view! { <code>{code}</code> }.into_any(),
        Inline::Strong(inner) => view! { <strong>{inlines_view(inner, name)}</strong> }.into_any(),
        Inline::Emphasis(inner) => view! { <em>{inlines_view(inner, name)}</em> }.into_any(),
        Inline::Strike(inner) => view! { <s>{inlines_view(inner, name)}</s> }.into_any(),
        Inline::Link { href, text } => view! {
            <a href=href target="_blank" rel="noopener noreferrer nofollow">{inlines_view(text, name)}</a>
        }
        .into_any(),
    }
}

/// Plain text, with mentions of the reader marked.
fn text_view(text: String, name: &str) -> AnyView {
    if name.is_empty() {
        return text.into_any();
    }
    let mut parts = Vec::new();
    let mut at = 0;
    for span in mention_spans(&text, name) {
        parts.push(text[at..span.start].to_string().into_any());
        let mention = text[span.clone()].to_string();
        parts.push(view! { <mark class="mention">{mention}</mark> }.into_any());
        at = span.end;
    }
    parts.push(text[at..].to_string().into_any());
    parts.into_any()
}

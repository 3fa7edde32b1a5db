//! Confab's WASM entry point: hydrates the page the server rendered.

#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(app::App);
    // Hydrated: the page's own handlers are attached. Until then a form posts the way it does
    // without JavaScript, which the browser tests that mean the page's own dispatch wait past
    // (`<html data-hydrated>`).
    if let Some(root) = leptos::prelude::document().document_element() {
        let _ = root.set_attribute("data-hydrated", "");
    }
}

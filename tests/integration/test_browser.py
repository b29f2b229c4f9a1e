"""The public pages in a real browser: Debian's Chromium driven by Selenium through /usr/bin/chromedriver.

Nothing is downloaded: Selenium is pointed at the system's driver and browser. The tests also take the
screenshots that README shows (docs/directory.png, docs/archive.png).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.helpers import need
from tests.integration.website import GROUP, Website, serve
from wgbot.store import ArchivedPost, Group, Member, Membership, secret_key

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
DOCS = Path(__file__).resolve().parents[2] / "docs"

# WCAG 2.2 SC 1.4.3: the contrast ratio of every element's own text against the first opaque background
# behind it (normal text needs 4.5:1). Returns the offenders.
CONTRAST_JS = """
function rgb(s) { const m = s.match(/[\\d.]+/g).map(Number);
                  return {r: m[0], g: m[1], b: m[2], a: m.length > 3 ? m[3] : 1}; }
function lum(c) { const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
                  return 0.2126 * f(c.r) + 0.7152 * f(c.g) + 0.0722 * f(c.b); }
function bg(el) { for (; el; el = el.parentElement) { const c = rgb(getComputedStyle(el).backgroundColor);
                  if (c.a > 0.5) return c; } return {r: 255, g: 255, b: 255, a: 1}; }
const bad = [];
for (const el of document.querySelectorAll('body *')) {
  const own = [...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
  if (!own || el.offsetParent === null) continue;
  const a = lum(rgb(getComputedStyle(el).color)), b = lum(bg(el));
  const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
  if (ratio < 4.5) bad.push(el.tagName + ' ' + ratio.toFixed(2) + ' ' + el.textContent.trim().slice(0, 40));
}
return bad;
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        need(False, "selenium (pip install -e '.[test]')")
    need(os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER), "Chromium and chromedriver (apt-get install "
                                                                    "chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1024,1300",
                "--disable-gpu", "--lang=en-GB"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(20)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Website]:
    yield from serve(tmp_path_factory.mktemp("browser"))


def by_text(driver: Any, text: str) -> Any:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.PARTIAL_LINK_TEXT, text)


def follow(driver: Any, element: Any, action: Any = None) -> None:
    """Click (or do `action` on) `element` and wait until the next page has replaced this one."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.wait import WebDriverWait

    page = driver.find_element(By.TAG_NAME, "html")

    def replaced(_: Any) -> bool:
        try:
            page.is_enabled()
            return False
        except WebDriverException:  # stale, or chromedriver's "Node ... does not belong to the document"
            return True
    (action or element.click)()
    WebDriverWait(driver, 20).until(replaced)


def test_a_visitor_follows_a_group_to_a_threaded_message_and_searches(browser: Any, site: Website) -> None:
    """Directory → group → archive → month → a reply with its quote folded → search, by links and the form,
    with the skip link first in the keyboard order and AA contrast; screenshots go to docs/."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    browser.set_window_size(1024, 1300)
    browser.get(site.url + "/")
    assert browser.title == "Working groups · ECCAR Test Network"
    assert browser.find_element(By.TAG_NAME, "h1").text == "ECCAR Test Network: working groups"
    assert browser.execute_script(CONTRAST_JS) == []
    DOCS.mkdir(exist_ok=True)
    browser.save_screenshot(str(DOCS / "directory.png"))
    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
    assert browser.switch_to.active_element.text == "Skip to content"
    browser.switch_to.active_element.send_keys(Keys.ENTER)
    assert browser.current_url.endswith("#content")
    follow(browser, by_text(browser, "Migrant Inclusion"))
    assert browser.find_element(By.TAG_NAME, "h1").text == "Migrant Inclusion"
    follow(browser, by_text(browser, "Read the archive"))
    follow(browser, by_text(browser, "November 2026"))
    replies = browser.find_elements(By.CSS_SELECTOR, "li.depth-1 a")
    assert [r.text for r in replies] == ["Re: Kick-off meeting in Bologna"]
    follow(browser, replies[0])
    quoted = browser.find_element(By.CSS_SELECTOR, "details.quoted")
    inner = quoted.find_element(By.TAG_NAME, "pre")
    assert not inner.is_displayed()
    quoted.find_element(By.TAG_NAME, "summary").click()
    assert inner.is_displayed() and "b…@example.net" in inner.text
    assert browser.find_element(By.PARTIAL_LINK_TEXT, "agenda.pdf").get_attribute("download") is not None
    assert browser.execute_script(CONTRAST_JS) == []
    browser.save_screenshot(str(DOCS / "archive.png"))
    follow(browser, by_text(browser, "Search the archives"))
    field = browser.find_element(By.ID, "q")
    assert browser.find_element(By.CSS_SELECTOR, "label[for=q]").text == "Words"
    follow(browser, field, lambda: field.send_keys("integration indicators", Keys.ENTER))
    results = browser.find_elements(By.CSS_SELECTOR, "ol.results a")
    assert [r.text for r in results] == ["Kick-off meeting in Bologna"]


def test_pages_fit_a_phone(browser: Any, site: Website) -> None:
    """At a phone's width (390 px) no page scrolls sideways."""
    with site.sessions() as session:
        reply = session.scalars(select(ArchivedPost.id).where(ArchivedPost.message_id == "<reply1@example.net>")).one()
    browser.set_window_size(390, 844)
    try:
        for path in ("/", f"/groups/{GROUP}/", f"/groups/{GROUP}/archive/msg/{reply}/", "/search?q=bologna"):
            browser.get(site.url + path)
            width = browser.execute_script("return [document.documentElement.scrollWidth, window.innerWidth]")
            assert width[0] <= width[1], (path, width)
    finally:
        browser.set_window_size(1024, 1300)


def test_hostile_post_is_not_live_in_the_browser(browser: Any, site: Website) -> None:
    """The hostile post's script never runs, no alert opens, no remote request leaves the page, and no style,
    image, frame, form or javascript: link from the post exists in the live DOM."""
    from selenium.common.exceptions import NoAlertPresentException

    with site.sessions() as session:
        hostile = session.scalars(select(ArchivedPost.id).where(ArchivedPost.message_id == "<hostile@example.org>")
                                  ).one()
    browser.get(f"{site.url}/groups/{GROUP}/archive/msg/{hostile}/")
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text  # noqa: B018 (reading it is the check)
    found = browser.execute_script("""
        const post = document.querySelector('article .body');
        return {scripts: document.scripts.length, imgs: post.querySelectorAll('img, iframe, svg, form, style').length,
                styled: post.querySelectorAll('[style], [onclick], [onerror], [onload]').length,
                js: [...post.querySelectorAll('a')].filter(a => a.href && !a.href.startsWith('https:')).length,
                remote: performance.getEntriesByType('resource').map(r => r.name)
                        .filter(n => !n.startsWith(location.origin)),
                links: [...post.querySelectorAll('a[href]')].map(a => a.href),
                background: getComputedStyle(document.body).backgroundColor, title: document.title};
    """)
    assert found["scripts"] == 0 and found["imgs"] == 0 and found["styled"] == 0 and found["js"] == 0
    assert found["remote"] == [] and found["links"] == ["https://example.org/report"]
    assert found["background"] == "rgb(255, 255, 255)" and "pwned" not in found["title"]


def test_one_click_form_in_the_browser(browser: Any, site: Website) -> None:
    """The RFC 8058 URL shows a page with a button (a GET changes nothing); pressing it posts
    List-Unsubscribe=One-Click and the member is gone."""
    from selenium.webdriver.common.by import By

    from wgbot.lists import unsubscribe_url

    with site.sessions.begin() as session:
        url = unsubscribe_url(site.cfg, secret_key(session), GROUP, "bob@example.net")

    def member() -> bool:
        with site.sessions() as session:
            return session.scalar(select(Membership.id).join(Member).join(Group).where(
                Group.slug == GROUP, Member.address == "bob@example.net")) is not None
    browser.get(site.url + url.removeprefix(site.cfg.network.base_url.rstrip("/")))
    assert browser.find_element(By.TAG_NAME, "h1").text == "Leave Migrant Inclusion?" and member()
    assert "b…@example.net" in browser.page_source and "bob@example.net" not in browser.page_source
    follow(browser, browser.find_element(By.CSS_SELECTOR, "form[method=post] button"))
    assert browser.find_element(By.TAG_NAME, "h1").text == "You have left Migrant Inclusion"
    assert not member()

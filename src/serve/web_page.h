/* web_page.h — the page `mmtune serve` answers GET / with: one self-contained HTML file (no
 * script or style from elsewhere) that searches the catalogue, classifies and captions a
 * dropped image, and picks the adapter; it calls the server's own JSON endpoints. */
#ifndef MMT_SERVE_WEB_PAGE_H
#define MMT_SERVE_WEB_PAGE_H

extern const char mmt_web_page[];

#endif

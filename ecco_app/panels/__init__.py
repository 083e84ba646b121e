"""What a page draws from its result (captions, charts, tables, downloads), kept out of the page
scripts so each page reads as a page and a result can be drawn again from a fragment."""

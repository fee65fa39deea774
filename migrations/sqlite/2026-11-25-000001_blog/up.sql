-- The test and example schema (SQLite: no UUID type, so `uid` is text).
CREATE TABLE categories (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    name VARCHAR(100) NOT NULL
);

CREATE TABLE articles (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    category_id INTEGER NOT NULL REFERENCES categories (id),
    title VARCHAR(200) NOT NULL,
    published BOOLEAN NOT NULL DEFAULT 0,
    views INTEGER NOT NULL DEFAULT 0,
    body TEXT,
    created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    uid TEXT NOT NULL,
    score DOUBLE NOT NULL DEFAULT 0
);

CREATE INDEX articles_category_id ON articles (category_id);

-- The test and example schema (PostgreSQL).
CREATE TABLE categories (
    id SERIAL PRIMARY KEY,
    name VARCHAR(100) NOT NULL
);

CREATE TABLE articles (
    id SERIAL PRIMARY KEY,
    category_id INTEGER NOT NULL REFERENCES categories (id),
    title VARCHAR(200) NOT NULL,
    published BOOLEAN NOT NULL DEFAULT FALSE,
    views INTEGER NOT NULL DEFAULT 0,
    body TEXT,
    created_at TIMESTAMP NOT NULL DEFAULT now(),
    uid UUID NOT NULL,
    score DOUBLE PRECISION NOT NULL DEFAULT 0
);

CREATE INDEX articles_category_id ON articles (category_id);

DROP TABLE articles;
DROP TABLE categories;

mod data;
mod demo_corpus;
mod train;

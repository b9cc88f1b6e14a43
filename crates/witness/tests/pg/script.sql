\set VERBOSITY terse
create table items (id int primary key, name text not null, price numeric(10,2), tags text[], created date default '2026-01-01');
insert into items (id, name, price, tags) values (1, 'apple', 1.25, '{fruit,red}'), (2, 'bread', 3.10, '{bakery}');
copy items (id, name, price) from stdin;
3	cheese	7.50
4	dates	4.00
\.
select * from items order by id;
update items set price = price * 2 where id = 2 returning id, price;
begin;
delete from items where id = 1;
select count(*) from items;
rollback;
select count(*) from items;
begin; insert into items (id, name) values (5, 'eggs'); commit;
select 1/0;
select * from nonexistent;
insert into items (id, name) values (1, 'duplicate');
select name from items where id = 1; select 'two statements' as note;
copy (select id, name from items order by id) to stdout with csv header;
select $$dollar ' quoted$$ as text, E'tab\there' as escaped, null as nothing;
select g, repeat('x', g) from generate_series(1, 300) g where g % 100 = 0;
listen witness_channel;
notify witness_channel, 'hello';
do $$ begin raise notice 'notice from a DO block'; end $$;
\d items
\dt
\di
drop table items;

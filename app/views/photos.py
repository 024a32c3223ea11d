import streamlit as st

st.title("Photos")
st.info("Coming soon.")
